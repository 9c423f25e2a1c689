"""Small builders for BackgroundJob bodies, so each test shows only what it is about."""

from __future__ import annotations

from typing import Any

from bgjob.api.models import BackgroundJob, parse

IMAGE = "registry.example.com/shop/worker:1.0"
CREATED = "2026-03-01T12:00:00Z"

CONTINUOUS: dict[str, Any] = {"continuous": {}}
SCHEDULE: dict[str, Any] = {"schedule": {"cron": "0 3 * * *"}}
ONCE: dict[str, Any] = {"once": {}}
QUEUE: dict[str, Any] = {"queue": {"redis": {"url": "redis://redis.shop:6379/0", "list": "jobs"}}}
TRIGGERS = {"continuous": CONTINUOUS, "schedule": SCHEDULE, "once": ONCE, "queue": QUEUE}


def body(
    name: str = "worker",
    *,
    namespace: str = "shop",
    uid: str = "0b7c3e2a-uid",
    generation: int = 1,
    annotations: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A BackgroundJob as the API server would send it; spec keys are camelCase."""
    spec.setdefault("image", IMAGE)
    spec.setdefault("trigger", CONTINUOUS)
    out: dict[str, Any] = {
        "apiVersion": "bgjob.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "generation": generation,
            "creationTimestamp": CREATED,
            "annotations": annotations or {},
        },
        "spec": spec,
    }
    if status is not None:
        out["status"] = status
    return out


def bgjob(name: str = "worker", **kwargs: Any) -> BackgroundJob:
    """A parsed BackgroundJob (see ``body``)."""
    return parse(body(name, **kwargs))


def queue(**settings: Any) -> dict[str, Any]:
    """A redis queue trigger with extra settings (minReplicas, targetPerReplica, ...)."""
    return {"queue": {**QUEUE["queue"], **settings}}
