"""Busy-aware scale-in, pure: which pods to mark so the ReplicaSet removes idle ones first.

Before a Deployment's replicas go down, each of its pods gets the annotation
``controller.kubernetes.io/pod-deletion-cost``: idle workers the lowest, busy ones
(their RQ worker's hostname is the pod's name) the highest. The ReplicaSet
controller deletes pods with the lowest cost first (after pods not yet running or
ready). Only pods a ReplicaSet of this Deployment controls are touched.
"""

from __future__ import annotations

from typing import Any

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
BUSY_COST = "1000"
IDLE_COST = "-1000"


def owned_by_deployment(pod: dict[str, Any], deployment: str) -> bool:
    """Whether a ReplicaSet of ``deployment`` controls the pod: its controller is the
    ReplicaSet named ``<deployment>-<pod-template-hash>``, as the Deployment names it."""
    meta = pod.get("metadata") or {}
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    if not template_hash:
        return False
    return any(
        ref.get("kind") == "ReplicaSet"
        and ref.get("apiVersion") == "apps/v1"
        and ref.get("controller") is True
        and ref.get("name") == f"{deployment}-{template_hash}"
        for ref in meta.get("ownerReferences") or []
    )


def deletion_cost_patches(
    pods: list[dict[str, Any]], busy: frozenset[str], deployment: str
) -> dict[str, str]:
    """Pod name -> the deletion cost it should carry, for the Deployment's pods whose
    annotation differs (a pod already marked right is not written again)."""
    patches: dict[str, str] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        name = meta.get("name")
        if not name or meta.get("deletionTimestamp") or not owned_by_deployment(pod, deployment):
            continue
        wanted = BUSY_COST if name in busy else IDLE_COST
        if (meta.get("annotations") or {}).get(DELETION_COST) != wanted:
            patches[name] = wanted
    return patches
