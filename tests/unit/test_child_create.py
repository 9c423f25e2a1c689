"""Creating a child costs one write: a create-only apply, and a read only when the name
is taken (someone else's object, or ours that the cache has not seen yet)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any, cast

from specs import SCHEDULE, body

from bgjob.kube import ApiError, Kube
from bgjob.reconcile import Reconciler
from bgjob.store import Store

NS, NAME = "shop", "worker"
KEY = (NS, NAME)
NOW = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)


class ApiServer:
    """Objects by (kind, name); a create-only apply of a taken name is a 409, as the
    API server answers an apply whose resourceVersion precondition fails."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, ...]] = []
        self.statuses: list[dict[str, Any]] = []
        self.events: list[str] = []

    def apply(
        self, manifest: dict[str, Any], manager: str = "", *, create_only: bool = False
    ) -> dict[str, Any]:
        key = (manifest["kind"], manifest["metadata"]["name"])
        self.calls.append(("apply", *key, "create-only" if create_only else "apply"))
        if create_only and key in self.objects:
            raise ApiError(409, "Conflict", "the object has been modified")
        served = copy.deepcopy(manifest)
        served["metadata"]["resourceVersion"] = "7"
        self.objects[key] = served
        return copy.deepcopy(served)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", kind, name))
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found is not None else None

    def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.statuses.append(status)
        return {"metadata": {"name": name, "namespace": namespace}, "status": status}

    def event(self, involved: dict[str, Any], kind: str, reason: str, message: str) -> None:
        self.events.append(reason)


def reconcile(server: ApiServer, bgj: dict[str, Any]) -> None:
    """One pass with a cold cache: the BackgroundJob only, none of its children."""
    store = Store()
    store.put_bgjob(bgj)
    Reconciler(cast(Kube, server), store, clock=lambda: NOW).reconcile(KEY)


def test_a_new_child_is_one_create_only_apply_and_no_read() -> None:
    server = ApiServer()
    reconcile(server, body(NAME, trigger=SCHEDULE))
    assert server.calls == [("apply", "CronJob", NAME, "create-only")]
    assert server.events == ["Created"]
    assert server.statuses[-1]["observedGeneration"] == 1


def test_someone_elses_object_of_that_name_is_read_and_left_alone() -> None:
    server = ApiServer()
    theirs = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": NAME}}
    server.objects[("CronJob", NAME)] = theirs
    reconcile(server, body(NAME, trigger=SCHEDULE))
    assert server.calls == [("apply", "CronJob", NAME, "create-only"), ("get", "CronJob", NAME)]
    assert server.objects[("CronJob", NAME)] == theirs
    ready = next(c for c in server.statuses[-1]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NameConflict")
    assert "Created" not in server.events


def test_our_child_the_cache_has_not_seen_is_read_and_not_written_again() -> None:
    server = ApiServer()
    bgj = body(NAME, trigger=SCHEDULE)
    reconcile(server, bgj)  # created; the next pass's cache has not seen it yet
    server.calls.clear()
    reconcile(server, bgj)
    assert server.calls == [("apply", "CronJob", NAME, "create-only"), ("get", "CronJob", NAME)]
    assert server.events == ["Created"]  # once, from the first pass
