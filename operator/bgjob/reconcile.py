"""Reconcile one BackgroundJob: the only place that writes to the API server for it.

The shape is metacontroller's: read the object and its cached children, decide
with pure functions (``bgjob.workloads``, ``bgjob.status``), then apply what
differs. Running it twice writes nothing the second time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from kubernetes.utils import parse_quantity

from bgjob import workloads
from bgjob.api.models import (
    BackgroundJob,
    BackgroundJobStatus,
    Condition,
    InvalidSpec,
    parse,
)
from bgjob.kube import CHILD_KINDS, KEDA_KINDS, ApiError, Kube
from bgjob.scaling.scaler import Scaler, View
from bgjob.status import (
    Observed,
    Problem,
    condition,
    keep_transition_times,
    next_cron_time,
    parse_time,
    rfc3339,
    run_record,
    status_from,
)
from bgjob.store import Body, ChildKey, Key, Store
from bgjob.workloads import keda
from bgjob.workloads.pod import (
    MANAGER,
    RUN_KIND_LABEL,
    RUN_NOW_ANNOTATION,
    SPEC_HASH_ANNOTATION,
)
from bgjob.workloads.runs import manual_run_name, once_due_time, run_job

log = logging.getLogger("bgjob.reconcile")

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "CronJob")
SCALING_ENGINES = ("builtin", "keda")
# Holds spec.replicas for a moment when the worker passes from our replicas to KEDA's.
HANDOVER_MANAGER = f"{MANAGER}-handover"


class TransientError(Exception):
    """Something retrying later can fix (a 5xx, a conflict, a child still terminating)."""


def covers(observed: Any, desired: Any) -> bool:
    """True when every field we want is in the observed object with our value.

    Extra fields (defaults, other managers' fields) do not matter; lists must match
    item by item. An empty value we want matches an absent one.
    """
    if isinstance(desired, dict):
        if not desired:
            return observed in (None, {})
        if not isinstance(observed, dict):
            return False
        return all(covers(observed.get(key), value) for key, value in desired.items())
    if isinstance(desired, list):
        if not desired:
            return observed in (None, [])
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(covers(o, d) for o, d in zip(observed, desired, strict=True))
        )
    if observed == desired:
        return True
    if desired == "" and observed is None:
        return True  # The API server drops empty strings (an env var with value "").
    return _same_quantity(observed, desired)


def _same_quantity(observed: Any, desired: Any) -> bool:
    """The API server stores quantities canonically: cpu 1 as "1", "0.5" as "500m"."""
    if not isinstance(observed, str | int) or not isinstance(desired, str | int):
        return False
    if isinstance(observed, bool) or isinstance(desired, bool):
        return False
    try:
        same = parse_quantity(observed) == parse_quantity(desired)  # type: ignore[no-untyped-call]
        return bool(same)
    except ValueError:
        return False


def needs_apply(current: Body | None, desired: Body) -> bool:
    """Whether the child must be (re)applied: missing, spec changed, or edited by hand."""
    if current is None:
        return True
    annotations = current["metadata"].get("annotations") or {}
    wanted_hash = desired["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    if annotations.get(SPEC_HASH_ANNOTATION) != wanted_hash:
        return True
    return not (
        covers(current["metadata"].get("labels"), desired["metadata"]["labels"])
        and covers(current.get("spec"), desired["spec"])
    )


def _controlled_by(child: Body, uid: str) -> bool:
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in child["metadata"].get("ownerReferences") or []
    )


def _is_run_of(child: Body, bgj: BackgroundJob) -> bool:
    """A Job this BackgroundJob started, directly or through its CronJob."""
    if child["kind"] != "Job":
        return False
    if _controlled_by(child, bgj.metadata.uid):
        return True
    return any(
        ref.get("kind") == "CronJob" and ref.get("name") == bgj.metadata.name
        for ref in child["metadata"].get("ownerReferences") or []
    )


def _run_active(job: Body) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return not any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions
    )


def preflight(bgj: BackgroundJob) -> Problem | None:
    """Problems admission cannot see but the operator can, before touching the cluster."""
    schedule = bgj.spec.trigger.schedule
    if schedule is not None:
        try:
            ZoneInfo(schedule.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            return Problem(
                "InvalidTimeZone",
                f"spec.trigger.schedule.timeZone: unknown time zone {schedule.time_zone!r}",
            )
        if not croniter.is_valid(schedule.cron):
            return Problem(
                "InvalidSchedule",
                f"spec.trigger.schedule.cron: {schedule.cron!r} is not a valid cron expression",
            )
    return None


@dataclass
class Pass:
    """What one reconcile pass found and did, collected for status and events."""

    bgj: BackgroundJob
    body: Body
    children: dict[ChildKey, Body]
    # The long-lived workload (Deployment, StatefulSet, CronJob); None for once.
    desired: Body | None = None
    # KEDA mode: the ScaledObject (and TriggerAuthentication) of a queue worker.
    autoscaling: list[Body] = field(default_factory=list)
    queue: View | None = None
    problem: Problem | None = None
    wake_after: float | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    run_now_handled: str | None = None
    once_run_started: str | None = None

    def event(self, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))


class Reconciler:
    """Makes the cluster match each BackgroundJob, one key at a time."""

    def __init__(
        self,
        kube: Kube,
        store: Store,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        scaler: Scaler | None = None,
        scaling_engine: str = "builtin",
    ) -> None:
        if scaling_engine not in SCALING_ENGINES:
            raise ValueError(f"scaling engine {scaling_engine!r}: want one of {SCALING_ENGINES}")
        self.kube = kube
        self.store = store
        self.clock = clock
        self.scaler = scaler
        self.scaling_engine = scaling_engine
        # Kinds whose watch keeps the cache current; others are dropped from it on delete.
        self.watched = set(CHILD_KINDS) | (set(KEDA_KINDS) if scaling_engine == "keda" else set())

    def keda_scales(self, bgj: BackgroundJob) -> bool:
        """Whether KEDA, not the built-in scaler, sets this BackgroundJob's replicas."""
        return self.scaling_engine == "keda" and bgj.spec.trigger.queue is not None

    # --- entry point ------------------------------------------------------------------

    def reconcile(self, key: Key) -> float | None:
        """Reconcile one BackgroundJob; returns seconds until it wants another look.

        Raises TransientError (or ApiError) when a retry with backoff should follow.
        """
        body = self.store.bgjob(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            if self.scaler is not None:
                self.scaler.untrack(key)
            return None  # Deleted: garbage collection removes the children.
        try:
            bgj = parse(body)
        except InvalidSpec as error:
            if self.scaler is not None:
                self.scaler.untrack(key)
            self._write_invalid(body, str(error))
            return None
        work = Pass(bgj=bgj, body=body, children=self.store.children(key))
        work.run_now_handled = bgj.status.run_now_handled
        work.once_run_started = bgj.status.once_run_started
        work.problem = preflight(bgj)
        work.queue = self._queue_view(work)
        queue_replicas = work.queue.replicas if work.queue else None
        if bgj.spec.trigger.queue is not None and queue_replicas is None:
            queue_replicas = self._running_replicas(work)
        work.desired = workloads.workload(bgj, queue_replicas)
        if self.keda_scales(bgj) and work.desired is not None and work.problem is None:
            work.desired = keda.without_replicas(work.desired)
            try:
                work.autoscaling = keda.keda_children(bgj, work.desired)
            except keda.KedaUnsupported as error:
                work.problem = Problem("KEDAUnsupported", str(error))
        if work.problem is None:
            self._workload(work)
            self._autoscaling(work)
            self._prune(work)
            self._runs(work)
        if work.problem is None and work.queue is not None:
            work.problem = work.queue.problem
        self._write_status(work)
        for kind, reason, message in work.events:
            self._event(body, kind, reason, message)
        return work.wake_after

    # --- queue scaling ----------------------------------------------------------------

    def _running_replicas(self, work: Pass) -> int | None:
        """Replicas the queue worker runs now, before the scaler's first decision."""
        for kind in ("Deployment", "StatefulSet"):
            child = work.children.get((kind, work.bgj.metadata.name))
            if child is not None and _controlled_by(child, work.bgj.metadata.uid):
                replicas = child["spec"].get("replicas")
                return int(replicas) if replicas is not None else None
        return None

    def _queue_view(self, work: Pass) -> View | None:
        """Track or untrack the BackgroundJob in the scaler; its latest decision."""
        if self.scaler is None:
            return None
        bgj = work.bgj
        key = (bgj.metadata.namespace, bgj.metadata.name)
        if (
            bgj.spec.trigger.queue is None
            or bgj.spec.suspend
            or work.problem is not None
            or self.keda_scales(bgj)
        ):
            self.scaler.untrack(key)
            return None
        self.scaler.track(bgj, self._running_replicas(work))
        return self.scaler.view(key)

    # --- the long-lived workload ------------------------------------------------------

    def _workload(self, work: Pass) -> None:
        bgj, desired = work.bgj, work.desired
        if desired is None:
            return
        kind, name = desired["kind"], desired["metadata"]["name"]
        current = work.children.get((kind, name))
        if current is not None and current["metadata"].get("deletionTimestamp"):
            raise TransientError(f"{kind} {name} is still being deleted")
        if bgj.spec.singleton and self._other_workloads_alive(work, kind):
            # Never two instances: the old workload's pods go first (foreground deletion).
            work.wake_after = 2.0
            return
        if (
            current is not None
            and "replicas" not in desired["spec"]
            and needs_apply(current, desired)
        ):
            self._hand_over_replicas(current)
        if self._apply_child(work, desired) is None or current is None:
            return
        before, after = current["spec"].get("replicas"), desired["spec"].get("replicas")
        if bgj.spec.trigger.queue is not None and after is not None and before != after:
            backlog = work.queue.backlog if work.queue else None
            work.event("Normal", "Scaled", f"scaled {name} {before}→{after}, backlog {backlog}")
            log.info(
                "scaled name=%s namespace=%s from=%s to=%s backlog=%s",
                name,
                bgj.metadata.namespace,
                before,
                after,
                backlog,
            )

    def _apply_child(self, work: Pass, desired: Body) -> Body | None:
        """Server-side apply one child if it differs from the cluster; the applied body.

        A child of that name we do not own, or one the API server rejects, is a
        Problem; a transient API error propagates for a retry with backoff.
        """
        bgj = work.bgj
        kind, name = desired["kind"], desired["metadata"]["name"]
        current = cached = work.children.get((kind, name))
        if current is None:
            # The cache holds only labelled children: never take over someone else's object.
            current = self.kube.get(kind, bgj.metadata.namespace, name)
        if current is not None and not _controlled_by(current, bgj.metadata.uid):
            self._conflict(work, current)
            return None
        if not needs_apply(current, desired):
            return None
        try:
            applied = self.kube.apply(desired)
        except ApiError as error:
            if not error.permanent:
                raise
            work.problem = Problem("ApplyFailed", f"{kind} {name} was rejected: {error.message}")
            return None
        seen = cached["metadata"].get("resourceVersion") if cached else None
        self.store.refresh_child(applied, kind, desired["apiVersion"], seen)
        work.children[(kind, name)] = applied
        verb = "created" if current is None else "applied"
        if current is None:
            work.event("Normal", "Created", f"created {kind} {name}")
        log.info("%s kind=%s name=%s namespace=%s", verb, kind, name, bgj.metadata.namespace)
        return applied

    def _hand_over_replicas(self, current: Body) -> None:
        """Before applying the worker without replicas, let another field manager own
        the current count, so dropping ours keeps it instead of resetting it to 1
        (Kubernetes' documented hand-over to an HPA)."""
        replicas = current["spec"].get("replicas")
        if replicas is None:
            return
        meta = current["metadata"]
        self.kube.apply(
            {
                "apiVersion": current["apiVersion"],
                "kind": current["kind"],
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                "spec": {"replicas": replicas},
            },
            manager=HANDOVER_MANAGER,
        )

    def _conflict(self, work: Pass, other: Body) -> None:
        """A child's name is taken by an object this BackgroundJob does not control."""
        kind, name = other.get("kind") or "object", other["metadata"]["name"]
        for ref in other["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "BackgroundJob" and ref.get("name") == work.bgj.metadata.name:
                # Left by a deleted BackgroundJob of the same name: garbage collection is on it.
                raise TransientError(f"{kind} {name} still belongs to a previous {name}")
        work.problem = Problem(
            "NameConflict",
            f"a {kind} named {name} already exists and is not owned by this BackgroundJob",
        )

    def _autoscaling(self, work: Pass) -> None:
        """Apply the KEDA objects (KEDA mode) once the workload they scale exists."""
        workload = work.desired
        if work.problem is not None or workload is None:
            return
        if (workload["kind"], workload["metadata"]["name"]) not in work.children:
            return  # A singleton waiting for its old workload to go: next time.
        for desired in work.autoscaling:
            self._apply_child(work, desired)
            if work.problem is not None:
                return

    def _other_workloads_alive(self, work: Pass, kind: str) -> bool:
        alive = False
        for (child_kind, name), child in list(work.children.items()):
            other = child_kind in WORKLOAD_KINDS and child_kind != kind
            if other and _controlled_by(child, work.bgj.metadata.uid):
                self._delete(work, child_kind, name, "Foreground")
                alive = True
        return alive

    def _prune(self, work: Pass) -> None:
        """Delete children this BackgroundJob owns but no longer wants (trigger changed)."""
        bgj, desired = work.bgj, work.desired
        wanted = {(desired["kind"], desired["metadata"]["name"])} if desired else set()
        wanted |= {(child["kind"], child["metadata"]["name"]) for child in work.autoscaling}
        keeps_runs = bgj.spec.trigger.kind in ("schedule", "once")
        for (kind, name), child in list(work.children.items()):
            if (kind, name) in wanted or not _controlled_by(child, bgj.metadata.uid):
                continue
            if kind == "Job" and keeps_runs:
                continue
            if child["metadata"].get("deletionTimestamp"):
                continue
            self._delete(work, kind, name, "Background")

    def _delete(self, work: Pass, kind: str, name: str, propagation: str) -> None:
        child = work.children.get((kind, name))
        if child is not None and child["metadata"].get("deletionTimestamp"):
            return
        self.kube.delete(kind, work.bgj.metadata.namespace, name, propagation)
        work.children.pop((kind, name), None)
        if child is not None and kind not in self.watched:
            # No watch will report the deletion (a KEDA object after a switch to builtin).
            self.store.drop_child(child, kind)
        work.event("Normal", "Deleted", f"deleted {kind} {name}")
        log.info("deleted kind=%s name=%s namespace=%s", kind, name, work.bgj.metadata.namespace)

    # --- runs (Jobs) ------------------------------------------------------------------

    def _runs(self, work: Pass) -> None:
        if work.problem is not None:
            return
        kind = work.bgj.spec.trigger.kind
        if kind == "once":
            self._once(work)
        self._run_now(work)
        if kind in ("schedule", "once"):
            self._trim_manual_history(work)
        if kind == "schedule" and not work.bgj.spec.suspend:
            schedule = work.bgj.spec.trigger.schedule
            assert schedule is not None
            # Refresh nextRunTime after the tick even if the CronJob skips the run.
            now = self.clock()
            due = next_cron_time(schedule.cron, schedule.time_zone, now)
            self._wake(work, (due - now).total_seconds() + 1.0)

    def _wake(self, work: Pass, seconds: float) -> None:
        if work.wake_after is None or seconds < work.wake_after:
            work.wake_after = max(seconds, 0.0)

    def _job_runs(self, work: Pass) -> list[Body]:
        return [c for c in work.children.values() if _is_run_of(c, work.bgj)]

    def once_due(self, bgj: BackgroundJob) -> datetime:
        """When the once-run is due, as an aware UTC time."""
        created = parse_time(bgj.metadata.creation_timestamp) or self.clock()
        due = once_due_time(bgj, created)
        return due if due.tzinfo else due.replace(tzinfo=UTC)

    def _once(self, work: Pass) -> None:
        bgj = work.bgj
        name = bgj.metadata.name
        if self._once_started(work) or bgj.spec.suspend:
            return
        now = self.clock()
        due = self.once_due(bgj)
        if now < due:
            self._wake(work, (due - now).total_seconds())
            return
        self._start_run(work, run_job(bgj, name, "once"))
        if work.problem is None:
            work.once_run_started = rfc3339(now)

    def _once_started(self, work: Pass) -> bool:
        """Whether the once-run (not a manual run) has started: it never starts twice."""
        name = work.bgj.metadata.name
        last_run = work.bgj.status.last_run
        return (
            work.once_run_started is not None
            or ("Job", name) in work.children
            or (last_run is not None and last_run.name == name)
            or name in (work.bgj.status.active_runs or [])
        )

    def _start_run(self, work: Pass, job: Body) -> None:
        name = job["metadata"]["name"]
        try:
            created = self.kube.create(job)
        except ApiError as error:
            if error.status == 409:
                existing = self.kube.get("Job", work.bgj.metadata.namespace, name)
                if existing is not None and not _controlled_by(existing, work.bgj.metadata.uid):
                    self._conflict(work, existing)
                return  # Otherwise started already (our cache was behind).
            if not error.permanent:
                raise
            work.problem = Problem("RunRejected", f"Job {name} was rejected: {error.message}")
            return
        self.store.refresh_child(created, "Job", "batch/v1", None)
        work.children[("Job", name)] = created
        work.event("Normal", "RunStarted", f"started run {name}")
        log.info("started run=%s namespace=%s", name, work.bgj.metadata.namespace)

    def _run_now(self, work: Pass) -> None:
        bgj = work.bgj
        request = bgj.metadata.annotations.get(RUN_NOW_ANNOTATION)
        if not request or request == bgj.status.run_now_handled:
            return
        work.run_now_handled = request
        kind = bgj.spec.trigger.kind
        if kind not in ("schedule", "once"):
            work.event(
                "Warning",
                "RunNowIgnored",
                f"{RUN_NOW_ANNOTATION} applies to schedule and once triggers, not {kind}",
            )
            return
        if ("Job", manual_run_name(bgj, request)) in work.children:
            return  # This request's run exists: our status write is still on its way.
        active = [job for job in self._job_runs(work) if _run_active(job)]
        if kind == "schedule":
            policy = bgj.spec.effective_overlap
        else:
            policy = "Forbid" if bgj.spec.singleton else "Allow"
        if active and policy == "Forbid":
            names = ", ".join(sorted(j["metadata"]["name"] for j in active))
            work.event("Warning", "RunNowSkipped", f"not started: run {names} is still active")
            return
        if active and policy == "Replace":
            for job in active:
                self._delete(work, "Job", job["metadata"]["name"], "Background")
        self._start_run(work, run_job(bgj, manual_run_name(bgj, request), "manual"))

    def _trim_manual_history(self, work: Pass) -> None:
        """Keep as many finished manual runs as ``history`` says, like the CronJob does."""
        history = work.bgj.spec.history
        manual = [
            job
            for job in self._job_runs(work)
            if job["metadata"].get("labels", {}).get(RUN_KIND_LABEL) == "manual"
            and not _run_active(job)
            and not job["metadata"].get("deletionTimestamp")
        ]
        records = sorted(
            (run_record(job) for job in manual),
            key=lambda r: (r.completion_time or "", r.name),
            reverse=True,
        )
        kept = {"Succeeded": history.successful_runs, "Failed": history.failed_runs}
        for record in records:
            assert record.result is not None
            if kept[record.result] > 0:
                kept[record.result] -= 1
            else:
                self._delete(work, "Job", record.name, "Background")

    # --- status and events ------------------------------------------------------------

    def _write_status(self, work: Pass) -> None:
        bgj, desired = work.bgj, work.desired
        workload = None
        if desired is not None:
            current = work.children.get((desired["kind"], desired["metadata"]["name"]))
            if current is not None and _controlled_by(current, bgj.metadata.uid):
                workload = current
        observed = Observed(workload=workload, runs=tuple(self._job_runs(work)))
        replicas = desired["spec"].get("replicas") if desired else None
        queue_length = work.queue.backlog if work.queue else bgj.status.queue_length
        if self.keda_scales(bgj):
            # KEDA decides: desired is whatever it set on the worker; the backlog is its own.
            replicas = (workload or {}).get("spec", {}).get("replicas")
            queue_length = None
        is_once = bgj.spec.trigger.kind == "once"
        due = self.once_due(bgj) if is_once else None
        status = status_from(
            bgj,
            observed,
            self.clock(),
            desired_replicas=replicas,
            due=due,
            problem=work.problem,
            queue_length=queue_length,
            once_started=self._once_started(work) if is_once else None,
        ).model_copy(
            update={
                "run_now_handled": work.run_now_handled,
                "once_run_started": work.once_run_started if is_once else None,
            }
        )
        self._events_from_transition(work, bgj.status, status)
        self._apply_status(work.body, bgj.status, status)

    def _events_from_transition(
        self, work: Pass, before: BackgroundJobStatus, after: BackgroundJobStatus
    ) -> None:
        run = after.last_run
        if run is not None and run.result is not None and run != before.last_run:
            if run.result == "Succeeded":
                work.event("Normal", "RunSucceeded", f"run {run.name} succeeded")
            else:
                detail = f": {run.reason}" if run.reason else ""
                work.event("Warning", "RunFailed", f"run {run.name} failed{detail}")
        was = _find(before.conditions, "Degraded")
        now = _find(after.conditions, "Degraded")
        if now is not None and now.status == "True":
            if was is None or was.status != "True" or was.reason != now.reason:
                work.event("Warning", now.reason, now.message)
        elif was is not None and was.status == "True":
            work.event("Normal", "Recovered", "the BackgroundJob is no longer degraded")

    def _apply_status(
        self, body: Body, before: BackgroundJobStatus, after: BackgroundJobStatus
    ) -> None:
        if after.wire() == before.wire():
            return
        meta = body["metadata"]
        try:
            written = self.kube.apply_status(meta["namespace"], meta["name"], after.wire())
            # So the next reconcile does not act on our own stale status.
            self.store.refresh_bgjob(written, meta.get("resourceVersion"))
        except ApiError as error:
            if error.status != 404:  # Deleted meanwhile: nothing left to report on.
                raise

    def _write_invalid(self, body: Body, message: str) -> None:
        """An object that passed admission but breaks the contract: Degraded, Stalled."""
        meta = body["metadata"]
        generation = int(meta.get("generation") or 0)
        before = BackgroundJobStatus.model_validate(body.get("status") or {})
        now = self.clock()
        conditions = keep_transition_times(
            [
                condition("Ready", False, "InvalidSpec", message, generation, now),
                condition("Progressing", False, "InvalidSpec", message, generation, now),
                condition("Degraded", True, "InvalidSpec", message, generation, now),
                condition("Stalled", True, "InvalidSpec", message, generation, now),
            ],
            before.conditions,
        )
        after = before.model_copy(
            update={
                "observed_generation": generation,
                "state": "Degraded",
                "conditions": conditions,
            }
        )
        was = _find(before.conditions, "Degraded")
        if was is None or was.status != "True" or was.message != message:
            self._event(body, "Warning", "InvalidSpec", message)
        self._apply_status(body, before, after)

    def _event(self, body: Body, kind: str, reason: str, message: str) -> None:
        try:
            self.kube.event(body, kind, reason, message)
        except ApiError as error:  # An Event is worth a log line, never a retry.
            log.warning("event not recorded reason=%s error=%s", reason, error)


def _find(conditions: list[Condition] | None, kind: str) -> Condition | None:
    return next((c for c in conditions or [] if c.type == kind), None)
