"""Reconcile one BackgroundJob: the only place that writes to the API server for it.

One pass reads the object and its cached children, asks ``bgjob.plan`` what
should exist (a pure plan: children, runs, their order), applies the plan, and
writes the status ``bgjob.status`` computes. Running it twice writes nothing the
second time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kubernetes.utils import parse_quantity

from bgjob.api.cron import schedule_problem
from bgjob.api.models import (
    BackgroundJob,
    BackgroundJobStatus,
    Condition,
    InvalidSpec,
    parse,
)
from bgjob.api.names import (
    MANAGER,
    SCALING_ENGINES,
    SPEC_HASH_ANNOTATION,
    Body,
    Event,
    EventType,
    ScalingEngine,
)
from bgjob.events import EventSender
from bgjob.kube import CHILD_KINDS, KEDA_KINDS, ApiError, Kube, path
from bgjob.plan import (
    Delete,
    Plan,
    desired_children,
    job_runs,
    keda_scales,
    running_replicas,
    scheduler,
)
from bgjob.runs import (
    RunFailure,
    confirm_runs,
    is_run_of,
    once_due,
    once_run_lost,
    once_started,
    run_failure,
    run_pods_selector,
    run_selector,
    sooner,
    trim_pod,
)
from bgjob.scaling.network import NetworkPolicy, default_policy
from bgjob.scaling.probes import workers_to_read
from bgjob.scaling.scale_in import (
    DELETION_COST,
    MAX_REPLICASETS,
    busy_pool_workers,
    deletion_cost_patches,
    owned_pods,
    owned_replicasets,
)
from bgjob.scaling.scaler import Scaler, View
from bgjob.status import (
    Observed,
    Problem,
    condition,
    failure_detail,
    keep_transition_times,
    status_from,
)
from bgjob.store import ChildKey, Key, Store
from bgjob.workloads import keda
from bgjob.workloads.pod import controlled_by
from bgjob.workloads.services import replica_bounds

log = logging.getLogger("bgjob.reconcile")

# Holds spec.replicas for a moment when the worker passes from our replicas to KEDA's.
HANDOVER_MANAGER = f"{MANAGER}-handover"
# Fields whose values are quantities ("1" and "1000m" are the same cpu); nowhere else.
QUANTITY_MAPS = frozenset({"requests", "limits", "overhead"})
QUANTITY_FIELDS = frozenset({"sizeLimit"})


class TransientError(Exception):
    """Something retrying later can fix (a 5xx, a conflict, a child still terminating)."""


def covers(observed: Any, desired: Any, quantity: bool = False) -> bool:
    """True when every field we want is in the observed object with our value.

    Extra fields (defaults, other managers' fields) do not matter; lists must match
    item by item. An empty value we want matches an absent one. ``quantity`` says the
    value is a resource quantity, which the API server stores in canonical form.
    """
    if isinstance(desired, dict):
        if not desired:
            return observed in (None, {})
        if not isinstance(observed, dict):
            return False
        return all(
            covers(observed.get(key), value, quantity or key in QUANTITY_MAPS | QUANTITY_FIELDS)
            for key, value in desired.items()
        )
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
    return quantity and _same_quantity(observed, desired)


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


def preflight(bgj: BackgroundJob, keda_dials: NetworkPolicy | None = None) -> Problem | None:
    """Problems admission cannot see but the operator can, before touching the cluster.
    ``keda_dials``: KEDA scales this BackgroundJob, and the operator's network policy
    applies to the URLs KEDA would dial for it."""
    if keda_dials is not None:
        for where, url in keda.dialed_urls(bgj):
            denied = keda_dials.literal_problem(urlsplit(url).hostname or "")
            if denied is not None:
                return Problem("KEDAUnsupported", f"{where}: {denied}")
    schedule = bgj.spec.trigger.schedule
    if schedule is not None:
        try:
            ZoneInfo(schedule.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            return Problem(
                "InvalidTimeZone",
                f"spec.trigger.schedule.timeZone: unknown time zone {schedule.time_zone!r}",
            )
        never = schedule_problem(schedule.cron)
        if never is not None:
            return Problem("InvalidSchedule", f"spec.trigger.schedule.cron: {never}")
    return None


@dataclass
class Pass:
    """One reconcile pass: what it read, the plan, and what applying it found."""

    bgj: BackgroundJob
    body: Body
    children: dict[ChildKey, Body]
    plan: Plan
    queue: View | None = None
    problem: Problem | None = None
    events: list[Event] = field(default_factory=list)
    # How the failed runs whose pods were read ended, by Job name.
    failures: dict[str, RunFailure] = field(default_factory=dict)
    # A work-aware Deployment's own pods (metadata), listed before a scale-in.
    scale_in: list[Body] = field(default_factory=list)

    def event(self, kind: EventType, reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))


class Reconciler:
    """Makes the cluster match each BackgroundJob, one key at a time."""

    def __init__(
        self,
        kube: Kube,
        store: Store,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        scaler: Scaler | None = None,
        scaling_engine: str = "builtin",
        events: Callable[[Body, str, str, str], None] | None = None,
        policy: NetworkPolicy | None = None,
    ) -> None:
        if scaling_engine not in SCALING_ENGINES:
            raise ValueError(f"scaling engine {scaling_engine!r}: want one of {SCALING_ENGINES}")
        self.kube = kube
        self.store = store
        self.clock = clock
        # Where Events go: the operator queues them (EventSender.send); without, each is
        # sent at once, the same way the sender's thread sends it.
        self.events = events or EventSender(kube).deliver
        self.scaler = scaler
        # The networks the operator denies: KEDA's URLs are held to them too.
        self.policy = policy or default_policy()
        self.engine: ScalingEngine = "keda" if scaling_engine == "keda" else "builtin"
        # Kinds whose watch keeps the cache current; others are dropped from it on delete.
        self.watched = set(CHILD_KINDS) | (set(KEDA_KINDS) if self.engine == "keda" else set())

    def keda_scales(self, bgj: BackgroundJob) -> bool:
        """Whether KEDA, not the built-in scaler, sets this BackgroundJob's replicas."""
        return keda_scales(bgj, self.engine)

    # --- entry point: read, plan, apply, write status -------------------------------------

    def reconcile(self, key: Key) -> float | None:
        """Reconcile one BackgroundJob; returns seconds until it wants another look.

        Raises TransientError (or ApiError) when a retry with backoff should follow.
        """
        body = self.store.bgjob(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self._untrack(key)
            return None  # Deleted: garbage collection removes the children.
        try:
            bgj = parse(body)
        except InvalidSpec as error:
            self._untrack(key)
            self._write_invalid(body, str(error))
            return None
        children = self.store.children(key)
        problem = preflight(bgj, self.policy if self.keda_scales(bgj) else None)
        queue = self._queue_view(bgj, children, problem)
        scale_in: list[Body] = []
        if queue is not None:
            queue, scale_in = self._floor_at_busy_pods(bgj, children, queue)
        plan = desired_children(
            bgj,
            children,
            self.clock(),
            self.engine,
            queue_replicas=queue.replicas if queue else None,
            problem=problem,
        )
        work = Pass(bgj, body, children, plan, queue=queue, problem=plan.problem, scale_in=scale_in)
        # Read before any write: a transient error retries the whole pass.
        work.failures = self._read_failure(bgj, plan.pods_of)
        self._apply(work)
        if work.problem is None and queue is not None:
            work.problem = queue.problem
        self._write_status(work)
        for event in [*plan.events, *work.events]:
            self._event(body, event.type, event.reason, event.message)
        return plan.wake_after

    def _apply(self, work: Pass) -> None:
        """Carry out the plan in its order; stop at the first Problem."""
        plan = work.plan
        for delete in plan.retire:
            self._delete(work, delete)
        if plan.waiting is not None:
            log.info("waiting name=%s reason=%r", work.bgj.metadata.name, plan.waiting)
            return
        if plan.retry is not None:
            raise TransientError(plan.retry)
        if work.problem is not None:
            return
        if plan.workload is not None:
            self._apply_workload(work, plan.workload)
            for child in plan.autoscaling:
                if work.problem is None:
                    self._apply_child(work, child)
        for delete in plan.prune:
            self._delete(work, delete)
        if work.problem is None:
            self._apply_runs(work)

    # --- queue scaling ----------------------------------------------------------------

    def _untrack(self, key: Key) -> None:
        if self.scaler is not None:
            self.scaler.untrack(key)

    def _queue_view(
        self, bgj: BackgroundJob, children: dict[ChildKey, Body], problem: Problem | None
    ) -> View | None:
        """Track or untrack the BackgroundJob in the scaler; its latest decision."""
        key = (bgj.metadata.namespace, bgj.metadata.name)
        if (
            bgj.spec.trigger.queue is None
            or bgj.spec.suspend
            or problem is not None
            or self.keda_scales(bgj)
        ):
            self._untrack(key)
            return None
        if self.scaler is None:
            return None
        self.scaler.track(bgj, running_replicas(bgj, children))
        return self.scaler.view(key)

    # --- children -----------------------------------------------------------------------

    def _apply_workload(self, work: Pass, desired: Body) -> None:
        bgj = work.bgj
        kind, name = desired["kind"], desired["metadata"]["name"]
        current = work.children.get((kind, name))
        if (
            current is not None
            and "replicas" not in desired["spec"]
            and needs_apply(current, desired)
        ):
            self._hand_over_replicas(current)
        if current is not None and kind == "Deployment":
            self._mark_idle_pods_first(work, current, desired)
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
        applied = None
        if current is None:
            # Not cached: create it, unless that name is taken. The cache holds only
            # labelled children, so an object there may be someone else's (never taken
            # over) or ours not seen yet: a create-only apply fails on either, and only
            # then one GET tells them apart (client-go controllers create, then read on
            # AlreadyExists).
            try:
                applied = self._apply_or_problem(work, desired, create_only=True)
            except ApiError as error:
                if error.status != 409:
                    raise
                current = self.kube.get(kind, bgj.metadata.namespace, name)
                if current is None:
                    raise TransientError(f"{kind} {name} was there, then gone") from None
            if applied is None and current is None:
                return None  # rejected: work.problem says why
        if current is not None and not controlled_by(current, bgj.metadata.uid):
            self._conflict(work, current)
            return None
        if applied is None:
            if not needs_apply(current, desired):
                return None
            applied = self._apply_or_problem(work, desired)
            if applied is None:
                return None
        seen = cached["metadata"].get("resourceVersion") if cached else None
        self.store.refresh_child(applied, kind, desired["apiVersion"], seen)
        work.children[(kind, name)] = applied
        verb = "created" if current is None else "applied"
        if current is None:
            work.event("Normal", "Created", f"created {kind} {name}")
        log.info("%s kind=%s name=%s namespace=%s", verb, kind, name, bgj.metadata.namespace)
        return applied

    def _apply_or_problem(
        self, work: Pass, desired: Body, *, create_only: bool = False
    ) -> Body | None:
        """Apply one child; a rejection (invalid, forbidden) becomes the pass's Problem."""
        try:
            return self.kube.apply(desired, create_only=create_only)
        except ApiError as error:
            if not error.permanent:
                raise
            kind, name = desired["kind"], desired["metadata"]["name"]
            work.problem = Problem("ApplyFailed", f"{kind} {name} was rejected: {error.message}")
            return None

    def _floor_at_busy_pods(
        self, bgj: BackgroundJob, children: dict[ChildKey, Body], queue: View
    ) -> tuple[View, list[Body]]:
        """Before a work-aware pool scales in, tell the scaler which pods are the pool's
        own, so its decision never goes below those busy with a job: the floor is in the
        replicas the plan hashes and applies. A Deployment's pods (metadata) are kept for
        the deletion costs; a StatefulSet's (a singleton) are ``<name>-<ordinal>``."""
        name = bgj.metadata.name
        current = next(
            (
                child
                for kind in ("Deployment", "StatefulSet")
                if (child := children.get((kind, name))) is not None
                and controlled_by(child, bgj.metadata.uid)
            ),
            None,
        )
        before = current["spec"].get("replicas") if current is not None else None
        if (
            self.scaler is None
            or current is None
            or queue.busy is None
            or queue.replicas is None
            or before is None
            or queue.replicas >= before
        ):
            return queue, []
        if current["kind"] == "StatefulSet":
            pods: list[Body] = []
            names = frozenset(f"{name}-{i}" for i in range(int(before)))
        else:
            pods = self._deployment_pods(bgj, current)
            names = frozenset(p["metadata"]["name"] for p in pods)
        key = (bgj.metadata.namespace, name)
        self.scaler.note_pods(key, names)
        return self.scaler.view(key) or queue, pods

    def _deployment_pods(self, bgj: BackgroundJob, deployment: Body) -> list[Body]:
        """The live pods (metadata only) of the ReplicaSets the Deployment controls."""
        labels = (deployment["spec"].get("selector") or {}).get("matchLabels") or {}
        uid = deployment["metadata"].get("uid")
        if not labels or not uid:
            return []
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        namespace = bgj.metadata.namespace
        most = workers_to_read(replica_bounds(bgj.spec)[1])  # 2 x maxReplicas, cap 512
        # Metadata only, a few at a time: never a tenant's pod specs, however many or big.
        sets = owned_replicasets(
            self.kube.list_metadata("ReplicaSet", selector, namespace, most=MAX_REPLICASETS * 4),
            uid,
        )
        if not sets:
            return []
        hashes = ",".join(sorted(set(sets.values())))
        return owned_pods(
            self.kube.list_metadata(
                "Pod", f"{selector},pod-template-hash in ({hashes})", namespace, most=most
            ),
            set(sets),
        )

    def _mark_idle_pods_first(self, work: Pass, current: Body, desired: Body) -> None:
        """When a work-aware queue's Deployment really scales in, give its idle pods the
        lowest deletion cost and its busy ones the highest, so the ReplicaSet removes
        idle workers first."""
        busy = work.queue.busy if work.queue is not None else None
        before, after = current["spec"].get("replicas"), desired["spec"].get("replicas")
        if busy is None or not work.scale_in or before is None or after is None:
            return
        if after >= before:
            return  # the busy floor cancelled the scale-in: nothing to mark
        namespace = work.bgj.metadata.namespace
        for pod, cost in deletion_cost_patches(work.scale_in, busy).items():
            try:
                self.kube.request(
                    "PATCH",
                    path("Pod", namespace, pod),
                    body={"metadata": {"annotations": {DELETION_COST: cost}}},
                    content_type="application/merge-patch+json",
                )
            except ApiError as error:
                if error.status != 404:  # a pod gone meanwhile needs no mark
                    raise
        log.info(
            "marked pods for scale-in name=%s namespace=%s busy=%d pods=%d",
            current["metadata"]["name"],
            namespace,
            len(busy),
            len(work.scale_in),
        )

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

    def _delete(self, work: Pass, delete: Delete) -> None:
        kind, name = delete.kind, delete.name
        child = work.children.get((kind, name))
        if child is not None and child["metadata"].get("deletionTimestamp"):
            return
        self.kube.delete(kind, work.bgj.metadata.namespace, name, delete.propagation)
        if delete.propagation == "Background":
            work.children.pop((kind, name), None)
        if child is not None and kind not in self.watched:
            # No watch will report the deletion (a KEDA object after a switch to builtin).
            self.store.drop_child(child, kind)
        work.event("Normal", "Deleted", f"deleted {kind} {name}")
        log.info(
            "deleted kind=%s name=%s namespace=%s propagation=%s",
            kind,
            name,
            work.bgj.metadata.namespace,
            delete.propagation,
        )

    # --- runs (Jobs) ----------------------------------------------------------------------

    def _apply_runs(self, work: Pass) -> None:
        if work.plan.runs.confirm:
            self._confirm_runs(work)
        bgj, runs = work.bgj, work.plan.runs
        for name in runs.delete:
            self._delete(work, Delete("Job", name, "Background"))
        claim = bgj.status.model_copy(update={"once_run_started": runs.once_run_started})
        claimed = runs.once_run_started != bgj.status.once_run_started
        if claimed:
            # Recorded before the Job exists: a restart that finds neither the Job (gone
            # after its TTL) nor its result must not run it again.
            self._apply_status(work.body, bgj.status, claim)
        for job in runs.start:
            once = claimed and job["metadata"]["name"] == bgj.metadata.name
            try:
                started = self._start_run(work, job)
            except ApiError:
                if once and self.kube.get("Job", bgj.metadata.namespace, bgj.metadata.name) is None:
                    self._apply_status(work.body, claim, bgj.status)  # Not created: unclaim.
                raise
            if once and not started:
                runs.once_run_started = bgj.status.once_run_started  # Refused: not started.

    def _confirm_runs(self, work: Pass) -> None:
        """Decide the manual run again from a live LIST of the BackgroundJob's Jobs.

        The CronJob is held (applied suspended) before this; a Job it created a
        moment before may not be in the cache yet, and starting next to it would
        break Forbid (and a singleton). One LIST, within the client's deadline; a
        transient error propagates, for a retry of the whole pass.
        """
        bgj, before = work.bgj, work.plan.runs
        listed = self.kube.list("Job", run_selector(bgj), bgj.metadata.namespace)
        # A LIST's items carry no kind or apiVersion of their own.
        live = [{**job, "apiVersion": "batch/v1", "kind": "Job"} for job in listed]
        cached = job_runs(bgj, work.children)
        runs = confirm_runs(bgj, cached, live, self.clock(), scheduler(bgj, work.children))
        work.events.extend(e for e in runs.events if e not in before.events)
        if runs.wake_after is not None:
            work.plan.wake_after = sooner(work.plan.wake_after, runs.wake_after)
        work.plan.runs = runs
        seen = {job["metadata"]["name"] for job in cached}
        for job in live:
            if job["metadata"]["name"] not in seen and is_run_of(job, bgj):
                log.info(
                    "run seen live before the cache run=%s namespace=%s",
                    job["metadata"]["name"],
                    bgj.metadata.namespace,
                )

    def _start_run(self, work: Pass, job: Body) -> bool:
        """Create one run's Job; False when the API server refused it for good."""
        name = job["metadata"]["name"]
        try:
            created = self.kube.create(job)
        except ApiError as error:
            if error.status == 409:
                existing = self.kube.get("Job", work.bgj.metadata.namespace, name)
                if existing is not None and not controlled_by(existing, work.bgj.metadata.uid):
                    self._conflict(work, existing)
                    return False
                return True  # Started already (our cache was behind).
            if not error.permanent:
                raise
            work.problem = Problem("RunRejected", f"Job {name} was rejected: {error.message}")
            return False
        self.store.refresh_child(created, "Job", "batch/v1", None)
        work.children[("Job", name)] = created
        work.event("Normal", "RunStarted", f"started run {name}")
        log.info("started run=%s namespace=%s", name, work.bgj.metadata.namespace)
        return True

    def _read_failure(self, bgj: BackgroundJob, job_name: str | None) -> dict[str, RunFailure]:
        """How a failed run's most recent failed pod ended: one LIST of its pods.

        The plan asks once per failed run (until status records it). Pods already gone
        (``ttlSecondsAfterFinished``) or a refusal (RBAC without pods list) leave the
        Job's own reason; a transient error propagates, for a retry with backoff.
        """
        if job_name is None:
            return {}
        namespace = bgj.metadata.namespace
        try:
            pods = self.kube.list("Pod", run_pods_selector(job_name), namespace)
        except ApiError as error:
            if not (error.permanent or error.status == 404):
                raise
            log.warning(
                "run pods not read run=%s namespace=%s error=%s", job_name, namespace, error
            )
            return {}
        failure = run_failure([trim_pod(pod) for pod in pods])
        log.info(
            "run failed run=%s namespace=%s pods=%d exit_code=%s reason=%s",
            job_name,
            namespace,
            len(pods),
            failure.exit_code if failure else None,
            failure.reason if failure else None,
        )
        return {job_name: failure} if failure is not None else {}

    # --- status and events ------------------------------------------------------------

    def _write_status(self, work: Pass) -> None:
        bgj, desired = work.bgj, work.plan.workload
        workload = None
        if desired is not None:
            current = work.children.get((desired["kind"], desired["metadata"]["name"]))
            if current is not None and controlled_by(current, bgj.metadata.uid):
                workload = current
        jobs = job_runs(bgj, work.children)
        replicas = desired["spec"].get("replicas") if desired else None
        # Only a backlog the scaler reads now is shown: none while suspended or untracked.
        queue_length = work.queue.backlog if work.queue else None
        busy = work.queue.busy if work.queue else None
        busy_workers = None
        if busy is not None and desired is not None:
            busy_workers = busy_pool_workers(busy, desired["metadata"]["name"], desired["kind"])
        if self.keda_scales(bgj):
            # KEDA decides: desired is whatever it set on the worker; the backlog is its own.
            replicas = (workload or {}).get("spec", {}).get("replicas")
        is_once = bgj.spec.trigger.kind == "once"
        runs = work.plan.runs
        recorded = bgj.model_copy(
            update={
                "status": bgj.status.model_copy(update={"once_run_started": runs.once_run_started})
            }
        )
        status = status_from(
            bgj,
            Observed(workload=workload, runs=tuple(jobs)),
            self.clock(),
            desired_replicas=replicas,
            due=once_due(bgj, self.clock()) if is_once else None,
            problem=work.problem,
            queue_length=queue_length,
            busy_workers=busy_workers,
            last_activity_time=work.queue.last_activity if work.queue else None,
            once_started=once_started(recorded, jobs) if is_once else None,
            once_lost=is_once and once_run_lost(recorded, jobs),
            caveat=work.plan.caveat or queue_caveat(work.queue),
            waiting=work.plan.waiting,
            failures=work.failures,
        ).model_copy(
            update={
                "run_now_handled": runs.run_now_handled,
                # Kept whatever the trigger is: once means once, also after a trigger
                # changed to another and back (docs/api.md).
                "once_run_started": runs.once_run_started,
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
                detail = f": {failure_detail(run)}" if failure_detail(run) else ""
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

    def _event(self, body: Body, kind: EventType, reason: str, message: str) -> None:
        self.events(body, kind, reason, message)


def queue_caveat(queue: View | None) -> tuple[str, str] | None:
    """The ScalingLimited condition of a backlog the scaler could not read exactly."""
    if queue is None or queue.note is None:
        return None
    return "BacklogNotAttributed", queue.note


def _find(conditions: list[Condition] | None, kind: str) -> Condition | None:
    return next((c for c in conditions or [] if c.type == kind), None)
