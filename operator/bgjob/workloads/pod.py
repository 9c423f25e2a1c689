"""The pieces every child shares: labels, owner reference, and the pod template."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from bgjob.api.models import API_VERSION, KIND, BackgroundJob
from bgjob.api.names import (
    CONTAINER_NAME,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_TRIGGER,
    MANAGER,
    SHUTDOWN_ENV,
    SPEC_HASH_ANNOTATION,
    Body,
)

# Pod Security "restricted", unless the user's template says otherwise.
RESTRICTED_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}

Manifest = Body


def selector_labels(bgj: BackgroundJob) -> dict[str, str]:
    """Labels that select the pods of one BackgroundJob's workload (immutable)."""
    return {LABEL_INSTANCE: bgj.metadata.name, LABEL_MANAGED_BY: MANAGER}


def labels(bgj: BackgroundJob) -> dict[str, str]:
    """The labels every child and pod carries."""
    return {
        LABEL_NAME: bgj.metadata.name,
        **selector_labels(bgj),
        LABEL_TRIGGER: bgj.spec.trigger.kind,
    }


def owner_reference(bgj: BackgroundJob) -> dict[str, Any]:
    """The controller owner reference that ties a child to its BackgroundJob."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": bgj.metadata.name,
        "uid": bgj.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controlled_by(child: Body, uid: str) -> bool:
    """Whether ``child`` carries the controller owner reference to the object ``uid``."""
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in child["metadata"].get("ownerReferences") or []
    )


def metadata(bgj: BackgroundJob, name: str | None = None) -> dict[str, Any]:
    """Metadata of a child: name, namespace, labels, owner reference."""
    meta: dict[str, Any] = {
        "name": name or bgj.metadata.name,
        "namespace": bgj.metadata.namespace,
        "labels": labels(bgj),
    }
    if bgj.metadata.uid:  # `render` works without a cluster, so without a uid.
        meta["ownerReferences"] = [owner_reference(bgj)]
    return meta


def deep_merge(base: Any, overlay: Any) -> Any:
    """Merge overlay into base: maps recursively, everything else replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = copy.deepcopy(base)
        for key, value in overlay.items():
            merged[key] = deep_merge(base.get(key), value) if key in base else value
        return merged
    return copy.deepcopy(overlay)


def termination_grace_seconds(grace_period_seconds: int, pre_stop_sleep_seconds: int) -> int:
    """The pod's terminationGracePeriodSeconds for a worker promised
    `grace_period_seconds` between SIGTERM and SIGKILL.

    Kubernetes counts the grace period from the start of the preStop hook, and
    SIGTERM only comes after the hook, so the hook's sleep is added: otherwise
    the worker would get less than the BGJOB_SHUTDOWN_TIMEOUT_SECONDS it is told.
    """
    return grace_period_seconds + pre_stop_sleep_seconds


def _env(bgj: BackgroundJob) -> list[dict[str, Any]]:
    ours = {SHUTDOWN_ENV: str(bgj.spec.shutdown.grace_period_seconds)}
    env = [var.wire() for var in bgj.spec.env or [] if var.name not in ours]
    env.extend({"name": name, "value": value} for name, value in ours.items())
    return env


def _worker_container(bgj: BackgroundJob, overlay: dict[str, Any]) -> dict[str, Any]:
    spec = bgj.spec
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": spec.image}
    container.update(deep_merge({"securityContext": RESTRICTED_CONTAINER_SECURITY}, overlay))
    container.update(name=CONTAINER_NAME, image=spec.image, env=_env(bgj))
    if spec.command is not None:
        container["command"] = list(spec.command)
    if spec.args is not None:
        container["args"] = list(spec.args)
    if spec.env_from:
        container["envFrom"] = [source.wire() for source in spec.env_from]
    if spec.resources is not None:
        container["resources"] = spec.resources.wire()
    if spec.shutdown.pre_stop_sleep_seconds > 0:
        container["lifecycle"] = {
            "preStop": {"sleep": {"seconds": spec.shutdown.pre_stop_sleep_seconds}}
        }
    return container


def pod_template(bgj: BackgroundJob, restart_policy: str) -> dict[str, Any]:
    """The pod template shared by every workload kind.

    Fields set on the BackgroundJob win over the user's template overlay, and the
    overlay wins over the restricted security defaults.
    """
    overlay = bgj.spec.template
    overlay_spec = copy.deepcopy(overlay.spec) if overlay and overlay.spec else {}
    overlay_containers = overlay_spec.pop("containers", None) or []
    worker_overlay: dict[str, Any] = next(
        (c for c in overlay_containers if c.get("name") == CONTAINER_NAME), {}
    )
    sidecars = [c for c in overlay_containers if c.get("name") != CONTAINER_NAME]

    pod_spec = deep_merge({"securityContext": RESTRICTED_POD_SECURITY}, overlay_spec)
    pod_spec["containers"] = [_worker_container(bgj, worker_overlay), *sidecars]
    pod_spec["restartPolicy"] = restart_policy
    pod_spec["terminationGracePeriodSeconds"] = termination_grace_seconds(
        bgj.spec.shutdown.grace_period_seconds, bgj.spec.shutdown.pre_stop_sleep_seconds
    )
    if bgj.spec.service_account_name:
        pod_spec["serviceAccountName"] = bgj.spec.service_account_name

    meta: dict[str, Any] = {"labels": labels(bgj)}
    if overlay and overlay.metadata:
        meta["labels"] = {**(overlay.metadata.labels or {}), **labels(bgj)}
        if overlay.metadata.annotations:
            meta["annotations"] = dict(overlay.metadata.annotations)
    return {"metadata": meta, "spec": pod_spec}


def spec_hash(manifest: Manifest) -> str:
    """A short, stable hash of a manifest, ignoring the hash annotation itself."""
    body = manifest
    annotations = manifest.get("metadata", {}).get("annotations")
    if annotations is not None and SPEC_HASH_ANNOTATION in annotations:
        # A copy of the two levels that change; the rest is only read.
        body = {
            **manifest,
            "metadata": {
                **manifest["metadata"],
                "annotations": {k: v for k, v in annotations.items() if k != SPEC_HASH_ANNOTATION},
            },
        }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def with_spec_hash(manifest: Manifest) -> Manifest:
    """Stamp the manifest with its hash so a later reconcile can skip an unchanged apply."""
    manifest.setdefault("metadata", {}).setdefault("annotations", {})[SPEC_HASH_ANNOTATION] = (
        spec_hash(manifest)
    )
    return manifest
