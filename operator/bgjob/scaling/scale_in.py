"""Busy-aware scale-in, pure: which pods to mark so the ReplicaSet removes idle ones first.

Before a Deployment's replicas go down, each of its pods gets the annotation
``controller.kubernetes.io/pod-deletion-cost``: idle workers the lowest, busy ones
(their RQ worker's hostname is the pod's hostname, see ``pod_hostname``) the highest. The ReplicaSet
controller deletes pods with the lowest cost first (after pods not yet running or
ready). Only pods a ReplicaSet of this Deployment controls are touched, by uid: the
pod's controller is a ReplicaSet whose controller is the Deployment.
"""

from __future__ import annotations

import re
from typing import Any

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
BUSY_COST = "1000"
IDLE_COST = "-1000"
# ReplicaSets of one Deployment whose pods are looked at (its revision history).
MAX_REPLICASETS = 16


def _controller_uid(meta: dict[str, Any], kind: str, api_version: str) -> str | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") is True:
            if ref.get("kind") == kind and ref.get("apiVersion") == api_version:
                return str(ref.get("uid") or "") or None
            return None
    return None


def owned_replicasets(replicasets: list[dict[str, Any]], deployment_uid: str) -> dict[str, str]:
    """uid -> pod-template-hash of the ReplicaSets the Deployment (by uid) controls."""
    owned: dict[str, str] = {}
    for rs in replicasets:
        meta = rs.get("metadata") or {}
        template_hash = (meta.get("labels") or {}).get("pod-template-hash")
        uid = meta.get("uid")
        if (
            uid
            and template_hash
            and _controller_uid(meta, "Deployment", "apps/v1") == deployment_uid
        ):
            owned[str(uid)] = str(template_hash)
    return dict(list(owned.items())[:MAX_REPLICASETS])


def owned_pods(pods: list[dict[str, Any]], replicaset_uids: set[str]) -> list[dict[str, Any]]:
    """The pods one of these ReplicaSets (by uid) controls, not being deleted."""
    return [
        pod
        for pod in pods
        if (meta := pod.get("metadata") or {}).get("name")
        and not meta.get("deletionTimestamp")
        and _controller_uid(meta, "ReplicaSet", "apps/v1") in replicaset_uids
    ]


# The longest hostname the kubelet gives a pod (a DNS label).
MAX_HOSTNAME = 63


def pod_hostname(pod_name: str) -> str:
    """The hostname a pod's processes see, so the name a worker records for itself (RQ's
    ``hostname`` field is ``socket.gethostname()``): the kubelet cuts a pod's name to 63
    characters and strips the "-" and "." left at the end. Busy worker names are
    compared with pods through this, never with the pod's name itself."""
    return pod_name[:MAX_HOSTNAME].rstrip("-.")


def busy_floor(busy: frozenset[str], pod_names: frozenset[str], max_replicas: int) -> int:
    """Replicas a scale-in keeps: the pool's own pods busy with a job (a busy worker
    name that is no pod of this pool holds nothing up), within the maximum."""
    return min(sum(1 for pod in pod_names if pod_hostname(pod) in busy), max_replicas)


def deletion_cost_patches(pods: list[dict[str, Any]], busy: frozenset[str]) -> dict[str, str]:
    """Pod name -> the deletion cost it should carry, for the given (owned) pods whose
    annotation differs (a pod already marked right is not written again)."""
    patches: dict[str, str] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        name = meta.get("name")
        if not name:
            continue
        wanted = BUSY_COST if pod_hostname(name) in busy else IDLE_COST
        if (meta.get("annotations") or {}).get(DELETION_COST) != wanted:
            patches[name] = wanted
    return patches


# The API server cuts a generated name's base (a ReplicaSet's "<name>-<hash>-") to this
# many characters before adding 5 random ones (its names.SimpleNameGenerator).
GENERATED_BASE = 58
_ALNUM = re.compile(r"[a-z0-9]+")


def pool_pod(hostname: str, workload: str, kind: str) -> bool:
    """Whether a busy worker's hostname has the shape of a pod of this pool: a
    StatefulSet's ``<name>-<ordinal>``, or a Deployment's ReplicaSet pod
    ``<name>-<pod-template-hash>-<5 random>`` (base cut to 58 characters). Another
    pool's pods (``<name>-x-<hash>-...``) do not match. Pure."""
    if kind == "StatefulSet":
        return re.fullmatch(rf"{re.escape(workload)}-(0|[1-9][0-9]*)", hostname) is not None
    base, suffix = hostname[:-5], hostname[-5:]
    if len(hostname) <= 5 or not _ALNUM.fullmatch(suffix) or len(base) > GENERATED_BASE:
        return False
    if not base.startswith(f"{workload}-"):
        return False
    rest = base[len(workload) + 1 :]  # "<hash>-", cut short when the base was cut
    if len(base) < GENERATED_BASE:
        return rest.endswith("-") and _ALNUM.fullmatch(rest[:-1]) is not None and len(rest) <= 11
    cut = rest.removesuffix("-")
    return cut == "" or (_ALNUM.fullmatch(cut) is not None and len(cut) <= 10)


def busy_pool_workers(busy: frozenset[str], workload: str, kind: str) -> int:
    """How many busy workers are pods of this pool, by their hostnames' shape."""
    return sum(1 for hostname in busy if pool_pod(hostname, workload, kind))
