"""What should exist for one BackgroundJob, and in what order: one pure function.

``desired_children(bgj, children, now, engine)`` is metacontroller's sync hook:
from the spec and the observed children it decides the workload to apply, the
KEDA objects, the runs to start or delete, the children to remove and whether
they must be gone before anything new starts, when to look again, the events
to tell, and the failed run whose pods to read once. No I/O; the reconciler
applies the plan as given.

Singletons: the old workload's pods must be gone before the new one starts. An
old workload (another kind, or an active run when the trigger becomes
continuous or queue) is deleted in the foreground, which keeps the object until
its pods are gone, and the plan waits while any of it is left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from bgjob import workloads
from bgjob.api.models import BackgroundJob
from bgjob.api.names import Body, Event, Propagation, ScalingEngine
from bgjob.runs import Runs, is_finished, is_run_of, plan_runs
from bgjob.status import Problem, unrecorded_failure
from bgjob.workloads import keda
from bgjob.workloads.pod import controlled_by

ChildKey = tuple[str, str]  # (kind, name)

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "CronJob")
# How often a singleton looks whether its old workload's pods are gone yet.
SINGLETON_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Delete:
    """One child to delete."""

    kind: str
    name: str
    propagation: Propagation


@dataclass
class Plan:
    """What one reconcile pass does, in order: retire, apply, prune, runs."""

    # Deleted before anything is applied; while ``waiting`` nothing new starts.
    retire: list[Delete] = field(default_factory=list)
    waiting: str | None = None
    # The desired child is still being deleted (a quick re-create): retry with backoff.
    retry: str | None = None
    workload: Body | None = None
    autoscaling: list[Body] = field(default_factory=list)
    # Deleted after the new workload is applied (no singleton: no gap in service).
    prune: list[Delete] = field(default_factory=list)
    runs: Runs = field(default_factory=Runs)
    # A failed run status has not recorded yet: read its pods (once) to tell why it failed.
    pods_of: str | None = None
    problem: Problem | None = None
    # What the chosen engine cannot honour of the spec: shown in status, not an error.
    caveat: tuple[str, str] | None = None  # (reason, message)
    wake_after: float | None = None
    events: list[Event] = field(default_factory=list)


def keda_scales(bgj: BackgroundJob, engine: ScalingEngine) -> bool:
    """Whether KEDA, not the built-in scaler, sets this BackgroundJob's replicas."""
    return engine == "keda" and bgj.spec.trigger.queue is not None


def running_replicas(bgj: BackgroundJob, children: Mapping[ChildKey, Body]) -> int | None:
    """Replicas the worker runs now, before the scaler's first decision."""
    for kind in ("Deployment", "StatefulSet"):
        child = children.get((kind, bgj.metadata.name))
        if child is not None and controlled_by(child, bgj.metadata.uid):
            replicas = child["spec"].get("replicas")
            return int(replicas) if replicas is not None else None
    return None


def scheduler(bgj: BackgroundJob, children: Mapping[ChildKey, Body]) -> Body | None:
    """The CronJob that starts ``bgj``'s scheduled runs, as cached."""
    cronjob = children.get(("CronJob", bgj.metadata.name))
    return cronjob if cronjob is not None and controlled_by(cronjob, bgj.metadata.uid) else None


def job_runs(bgj: BackgroundJob, children: Mapping[ChildKey, Body]) -> list[Body]:
    """Every Job that is a run of ``bgj``: once, manual, or started by its CronJob."""
    return [child for child in children.values() if is_run_of(child, bgj)]


def desired_children(
    bgj: BackgroundJob,
    children: Mapping[ChildKey, Body],
    now: datetime,
    engine: ScalingEngine = "builtin",
    *,
    queue_replicas: int | None = None,
    problem: Problem | None = None,
) -> Plan:
    """The plan for ``bgj`` given its observed ``children`` at ``now``.

    ``queue_replicas`` is the built-in scaler's latest decision; ``problem`` one
    found before planning (preflight): with it, nothing is applied or started.
    """
    jobs = job_runs(bgj, children)
    # The status is written whatever else happens in this pass: a failure is recorded now.
    plan = Plan(problem=problem, pods_of=unrecorded_failure(bgj, jobs), runs=Runs.recorded(bgj))
    if problem is not None:
        return plan
    runs = plan_runs(bgj, jobs, now, cronjob=scheduler(bgj, children))
    plan.runs = runs
    plan.events.extend(runs.events)
    plan.wake_after = runs.wake_after
    if bgj.spec.trigger.queue is not None and queue_replicas is None:
        queue_replicas = running_replicas(bgj, children)
    desired = workloads.workload(bgj, queue_replicas, hold_schedule=runs.hold_schedule)
    if keda_scales(bgj, engine) and desired is not None:
        desired = keda.without_replicas(desired)
        plan.caveat = keda.readiness_caveat(bgj)
        try:
            plan.autoscaling = keda.keda_children(bgj, desired)
        except keda.KedaUnsupported as error:
            plan.problem = Problem("KEDAUnsupported", str(error))
            return plan
    plan.workload = desired
    wanted = {_key(child) for child in [desired, *plan.autoscaling] if child is not None}
    if desired is not None:
        current = children.get(_key(desired))
        if current is not None and current["metadata"].get("deletionTimestamp"):
            plan.retry = f"{desired['kind']} {desired['metadata']['name']} is still being deleted"
    old = _old_instances(bgj, children, wanted)
    if bgj.spec.singleton and old:
        plan.retire = [
            Delete(kind, name, "Foreground")
            for (kind, name), child in old.items()
            if not child["metadata"].get("deletionTimestamp")
        ]
        plan.waiting = "the previous workload's pods are still terminating: " + ", ".join(
            f"{kind} {name}" for kind, name in sorted(old)
        )
        plan.wake_after = SINGLETON_POLL_SECONDS
        # Nothing new starts, the run-now request included: the next pass takes it.
        plan.runs = Runs.recorded(bgj)
        plan.events = []
        return plan
    plan.prune = _unwanted(bgj, children, wanted)
    return plan


def _key(child: Body) -> ChildKey:
    return child["kind"], child["metadata"]["name"]


def _old_instances(
    bgj: BackgroundJob, children: Mapping[ChildKey, Body], wanted: set[ChildKey]
) -> dict[ChildKey, Body]:
    """Children whose pods would run next to the new workload's: another workload kind,
    and, when the trigger no longer runs to completion, the runs still active."""
    keeps_runs = bgj.spec.trigger.kind in ("schedule", "once")
    old = {}
    for key, child in children.items():
        kind = key[0]
        if key in wanted or not controlled_by(child, bgj.metadata.uid):
            continue
        if kind in WORKLOAD_KINDS or (kind == "Job" and not keeps_runs and not is_finished(child)):
            old[key] = child
    return old


def _unwanted(
    bgj: BackgroundJob, children: Mapping[ChildKey, Body], wanted: set[ChildKey]
) -> list[Delete]:
    """Children this BackgroundJob owns but no longer wants (the trigger changed)."""
    keeps_runs = bgj.spec.trigger.kind in ("schedule", "once")
    out = []
    for (kind, name), child in children.items():
        if (kind, name) in wanted or not controlled_by(child, bgj.metadata.uid):
            continue
        if kind == "Job" and keeps_runs:
            continue
        if child["metadata"].get("deletionTimestamp"):
            continue
        out.append(Delete(kind, name, "Background"))
    return out
