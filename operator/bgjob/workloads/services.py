"""Long-running workers (continuous and queue triggers): a Deployment or a StatefulSet."""

from __future__ import annotations

from bgjob.api.models import BackgroundJob, BackgroundJobSpec
from bgjob.workloads.pod import Manifest, metadata, pod_template, selector_labels, with_spec_hash


def replica_bounds(spec: BackgroundJobSpec) -> tuple[int, int]:
    """The fewest and most replicas a worker may have: ``[minReplicas, concurrency]`` for
    a queue, ``concurrency`` for continuous; a singleton never more than one."""
    most = 1 if spec.singleton else spec.concurrency
    if spec.trigger.queue is None:
        return most, most
    return min(spec.trigger.queue.min_replicas, most), most


def service_replicas(bgj: BackgroundJob, queue_replicas: int | None = None) -> int:
    """Replicas the worker should have now.

    continuous: ``concurrency``; queue: the scaler's decision (``queue_replicas``),
    ``minReplicas`` before the first decision; singleton caps at 1; suspend is 0.
    """
    spec = bgj.spec
    if spec.suspend:
        return 0
    least, most = replica_bounds(spec)
    if spec.trigger.queue is not None and queue_replicas is not None:
        return max(least, min(queue_replicas, most))
    return least


def deployment(bgj: BackgroundJob, replicas: int) -> Manifest:
    """A Deployment: the worker with ``replicas`` interchangeable pods."""
    return with_spec_hash(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(bgj),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector_labels(bgj)},
                "strategy": {"type": "RollingUpdate"},
                "template": pod_template(bgj, restart_policy="Always"),
            },
        }
    )


def statefulset(bgj: BackgroundJob, replicas: int) -> Manifest:
    """A StatefulSet of at most one pod: the strict singleton.

    A StatefulSet never starts a replacement pod before the old one is known to be
    gone, also during a rollout (OrderedReady) and when a node is lost, which a
    Deployment (surge, or Recreate racing a lost node) cannot promise.
    """
    return with_spec_hash(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": metadata(bgj),
            "spec": {
                "replicas": min(replicas, 1),
                "serviceName": bgj.metadata.name,
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate"},
                "selector": {"matchLabels": selector_labels(bgj)},
                "template": pod_template(bgj, restart_policy="Always"),
            },
        }
    )


def service_workload(bgj: BackgroundJob, queue_replicas: int | None = None) -> Manifest:
    """The worker for a continuous or queue BackgroundJob, per the singleton switch."""
    replicas = service_replicas(bgj, queue_replicas)
    return statefulset(bgj, replicas) if bgj.spec.singleton else deployment(bgj, replicas)
