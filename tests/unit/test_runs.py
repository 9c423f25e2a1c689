"""Runs, decided like the CronJob controller's syncCronJob: one table, one row per case.

Each row gives the BackgroundJob (trigger, singleton, overlap, suspend, run-now
annotation, what status already recorded), the Jobs that exist, and the clock;
and expects the runs started and deleted, the events, whether the CronJob is
held back, when to look again, and what status records.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st
from specs import CREATED, body

from bgjob.api.models import parse
from bgjob.kube import ApiError, Kube
from bgjob.reconcile import Reconciler
from bgjob.runs import (
    confirm_runs,
    failure_message,
    failure_reason,
    is_finished,
    next_cron_time,
    once_identity,
    plan_runs,
    run_failure,
    run_pods_selector,
    trim_pod,
)
from bgjob.store import Store
from bgjob.workloads.runs import manual_run_name

UID = "0b7c3e2a-uid"
CREATED_AT = datetime.fromisoformat(CREATED.replace("Z", "+00:00"))
NOW = CREATED_AT + timedelta(minutes=5)
NIGHTLY = {"schedule": {"cron": "0 3 * * *"}}
ONCE_NOW: dict[str, Any] = {"once": {}}
ONCE_LATER = {"once": {"delaySeconds": 600}}  # due at CREATED + 10 minutes
ONCE_AT_PAST = {"once": {"at": "2026-03-01T11:00:00Z"}}
FIRST, SECOND = manual_run_name(parse(body()), "first"), manual_run_name(parse(body()), "second")
TICK = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # NIGHTLY fires


def job(
    name: str,
    run: str,
    *,
    state: str = "active",
    created: str = "2026-03-01T12:01:00Z",
    completed: str = "2026-03-01T12:02:00Z",
    deleting: bool = False,
    once_of: str | None = None,
) -> dict[str, Any]:
    """A run's Job: ours (once, manual) carry our owner reference; scheduled ones the CronJob's.
    ``once_of`` is the once-run annotation's ``<uid>/<generation>``."""
    owner = (
        {"kind": "CronJob", "name": "worker", "uid": "cron-uid", "controller": True}
        if run == "scheduled"
        else {"kind": "BackgroundJob", "name": "worker", "uid": UID, "controller": True}
    )
    meta: dict[str, Any] = {
        "name": name,
        "labels": {"bgjob.dev/run": run},
        "ownerReferences": [owner],
        "creationTimestamp": created,
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-03-01T12:04:00Z"
    if once_of:
        meta["annotations"] = {"bgjob.dev/once-run": once_of}
    status: dict[str, Any] = {}
    if state != "active":
        kind = "Complete" if state == "succeeded" else "Failed"
        status["conditions"] = [{"type": kind, "status": "True", "lastTransitionTime": completed}]
        if state == "succeeded":
            status["completionTime"] = completed
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "status": status}


@dataclass
class Case:
    id: str
    trigger: dict[str, Any]
    jobs: list[dict[str, Any]] = field(default_factory=list)
    singleton: bool = False
    overlap: str | None = None
    suspend: bool = False
    run_now: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    history: dict[str, int] | None = None
    now: datetime = NOW
    cronjob_recorded: str | None = None  # the CronJob's status.lastScheduleTime
    # expected
    start: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    hold: bool = False
    wake: float | None = None
    run_now_handled: str | None = None
    once_started: bool = False
    confirm: bool = False  # the runs are read live before the manual run starts


# fmt: off
CASES = [
    # --- the once-run: due time, exactly once ---------------------------------------------
    Case("once, no time: starts now", ONCE_NOW, start=["worker"], once_started=True),
    Case("once, clock behind the API server's: still starts now", ONCE_NOW,
         now=CREATED_AT - timedelta(seconds=30), start=["worker"], once_started=True),
    Case("once, delay not over: waits for it", ONCE_LATER, wake=300.0),
    Case("once, clock behind: waits the delay from the creation time", ONCE_LATER,
         now=CREATED_AT - timedelta(seconds=30), wake=630.0),
    Case("once, delay over", ONCE_LATER, now=CREATED_AT + timedelta(minutes=10), start=["worker"],
         once_started=True),
    Case("once, at in the past: starts now", ONCE_AT_PAST, start=["worker"], once_started=True),
    Case("once, suspended: does not start", ONCE_NOW, suspend=True),
    Case("once, started before (recorded): never again", ONCE_NOW,
         status={"onceRunStarted": "2026-03-01T12:00:05Z"}, once_started=True),
    Case("once, its Job exists (status write lost): not again", ONCE_NOW,
         jobs=[job("worker", "once", state="succeeded")]),
    Case("once, a Job of ours carries our uid in its once-run annotation: not again", ONCE_NOW,
         jobs=[job("worker-1", "once", state="succeeded", once_of=f"{UID}/1")]),
    Case("once, its result recorded: not again", ONCE_NOW,
         status={"lastRun": {"name": "worker", "result": "Succeeded"}}),
    Case("once, singleton, a manual run active: waits for it", ONCE_NOW, singleton=True,
         jobs=[job(FIRST, "manual")]),
    Case("once, not singleton, a manual run active: starts beside it", ONCE_NOW,
         jobs=[job(FIRST, "manual")], start=["worker"], once_started=True),
    # --- run-now ---------------------------------------------------------------------------
    Case("run-now before the due time: a manual run, the once-run stays planned", ONCE_LATER,
         run_now="first", start=[FIRST], wake=300.0, run_now_handled="first"),
    Case("run-now, value already handled: nothing", NIGHTLY, run_now="first",
         status={"runNowHandled": "first"}, run_now_handled="first"),
    Case("run-now, its Job exists already (status write lost): not again", NIGHTLY,
         run_now="first", jobs=[job(FIRST, "manual")], run_now_handled="first", hold=True),
    Case("run-now, Forbid, a scheduled run active: skipped", NIGHTLY, run_now="first",
         jobs=[job("worker-29012345", "scheduled")], events=["RunNowSkipped"],
         run_now_handled="first"),
    Case("run-now, Forbid, a manual run active: skipped", NIGHTLY, run_now="second",
         status={"runNowHandled": "first"}, jobs=[job(FIRST, "manual")], events=["RunNowSkipped"],
         run_now_handled="second", hold=True),
    Case("run-now, singleton overrides Allow: skipped next to a scheduled run", NIGHTLY,
         singleton=True, overlap="Allow", run_now="first",
         jobs=[job("worker-29012345", "scheduled")], events=["RunNowSkipped"],
         run_now_handled="first"),
    Case("run-now, Replace: the active runs go, the manual run starts", NIGHTLY, overlap="Replace",
         run_now="first", jobs=[job("worker-29012345", "scheduled")], start=[FIRST],
         delete=["worker-29012345"], run_now_handled="first", confirm=True),
    Case("run-now, Allow: starts next to the scheduled run", NIGHTLY, overlap="Allow",
         run_now="first", jobs=[job("worker-29012345", "scheduled")], start=[FIRST],
         run_now_handled="first"),
    Case("run-now, finished runs do not count as active", NIGHTLY, run_now="first",
         jobs=[job("worker-29012345", "scheduled", state="succeeded")], start=[FIRST],
         run_now_handled="first", hold=True, confirm=True),
    Case("run-now, a run still being deleted counts as active", NIGHTLY, run_now="first",
         jobs=[job("worker-29012345", "scheduled", deleting=True)], events=["RunNowSkipped"],
         run_now_handled="first"),
    Case("run-now, suspended schedule: runs anyway, like kubectl create job --from", NIGHTLY,
         suspend=True, run_now="first", start=[FIRST], run_now_handled="first", hold=True,
         confirm=True),
    Case("run-now on continuous: ignored with a warning", {"continuous": {}}, run_now="first",
         events=["RunNowIgnored"], run_now_handled="first"),
    Case("run-now on once, singleton, the once-run active: skipped", ONCE_NOW, singleton=True,
         run_now="first", jobs=[job("worker", "once")], events=["RunNowSkipped"],
         run_now_handled="first"),
    Case("run-now on once, singleton, the once-run starting this pass: skipped", ONCE_NOW,
         singleton=True, run_now="first", start=["worker"], events=["RunNowSkipped"],
         run_now_handled="first", once_started=True),
    # --- run-now next to a scheduled run the cache may not show yet ---------------------------
    Case("run-now, Forbid, the schedule ticked 3 s ago, unrecorded: decided once it is",
         NIGHTLY, run_now="first", now=TICK + timedelta(seconds=3), wake=7.0),
    Case("run-now, singleton, the schedule ticked 3 s ago, unrecorded: decided once it is",
         NIGHTLY, singleton=True, overlap="Allow", run_now="first",
         now=TICK + timedelta(seconds=3), wake=7.0),
    Case("run-now, Forbid, the tick 3 s ago recorded by the CronJob: starts, read live first",
         NIGHTLY, run_now="first", now=TICK + timedelta(seconds=3),
         cronjob_recorded="2026-03-02T03:00:00Z", start=[FIRST], run_now_handled="first",
         hold=True, confirm=True),
    Case("run-now, Forbid, the tick 10 s ago: starts, read live first", NIGHTLY, run_now="first",
         now=TICK + timedelta(seconds=10), start=[FIRST], run_now_handled="first", hold=True,
         confirm=True),
    Case("run-now, Forbid, the schedule ticks in 2 s: decided after the tick", NIGHTLY,
         run_now="first", now=TICK - timedelta(seconds=2), wake=3.0),
    Case("run-now, Forbid, the schedule ticks in 6 s: starts, held first, read live first",
         NIGHTLY, run_now="first", now=TICK - timedelta(seconds=6), start=[FIRST],
         run_now_handled="first", hold=True, confirm=True),
    Case("run-now, Allow, the schedule ticked 3 s ago: starts beside it, nothing read", NIGHTLY,
         overlap="Allow", run_now="first", now=TICK + timedelta(seconds=3), start=[FIRST],
         run_now_handled="first"),
    Case("run-now, Replace, the schedule ticked 3 s ago, unrecorded: decided once it is",
         NIGHTLY, overlap="Replace", run_now="first", now=TICK + timedelta(seconds=3), wake=7.0),
    Case("run-now, suspended schedule, just after a tick: nothing in flight, starts", NIGHTLY,
         suspend=True, run_now="first", now=TICK + timedelta(seconds=3), start=[FIRST],
         run_now_handled="first", hold=True, confirm=True),
    # --- the schedule next to our own runs --------------------------------------------------
    Case("schedule, Forbid, a manual run active: the CronJob is held", NIGHTLY,
         jobs=[job(FIRST, "manual")], hold=True),
    Case("schedule, Forbid, the manual run finished: the CronJob runs again", NIGHTLY,
         jobs=[job(FIRST, "manual", state="succeeded")]),
    Case("schedule, Allow, a manual run active: not held", NIGHTLY, overlap="Allow",
         jobs=[job(FIRST, "manual")]),
    Case("schedule, Replace, a newer scheduled run: the older manual run goes", NIGHTLY,
         overlap="Replace", delete=[FIRST],
         jobs=[job(FIRST, "manual", created="2026-03-01T12:01:00Z"),
               job("worker-29012345", "scheduled", created="2026-03-01T12:03:00Z")]),
    Case("schedule, Replace, the manual run is the newer: both stay", NIGHTLY, overlap="Replace",
         jobs=[job("worker-29012345", "scheduled", created="2026-03-01T12:01:00Z"),
               job(FIRST, "manual", created="2026-03-01T12:03:00Z")]),
    # --- manual-run history ---------------------------------------------------------------------
    Case("history: finished manual runs beyond the limits are deleted, oldest first", NIGHTLY,
         history={"successfulRuns": 1, "failedRuns": 0}, delete=[FIRST, "worker-mfailed1"],
         jobs=[job(FIRST, "manual", state="succeeded", completed="2026-03-01T12:01:00Z"),
               job(SECOND, "manual", state="succeeded", completed="2026-03-01T12:02:00Z"),
               job("worker-mfailed1", "manual", state="failed"),
               job("worker-29012345", "scheduled", state="succeeded")]),
    Case("history: active manual runs are never trimmed", NIGHTLY,
         history={"successfulRuns": 0, "failedRuns": 0}, jobs=[job(FIRST, "manual")], hold=True),
]
# fmt: on


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_runs(case: Case) -> None:
    spec: dict[str, Any] = {"trigger": case.trigger, "suspend": case.suspend}
    if case.singleton:
        spec["singleton"] = True
    if case.overlap:
        spec["overlap"] = case.overlap
    if case.history:
        spec["history"] = case.history
    annotations = {"bgjob.dev/run-now": case.run_now} if case.run_now else None
    bgj = parse(body(annotations=annotations, status=case.status, **spec))
    cronjob = (
        {"metadata": {"name": "worker"}, "status": {"lastScheduleTime": case.cronjob_recorded}}
        if case.cronjob_recorded
        else None
    )

    runs = plan_runs(bgj, case.jobs, case.now, cronjob)

    assert [j["metadata"]["name"] for j in runs.start] == case.start
    assert sorted(runs.delete) == sorted(case.delete)
    assert [e.reason for e in runs.events] == case.events
    assert runs.hold_schedule is case.hold
    if "schedule" not in case.trigger or case.wake is not None:
        assert runs.wake_after == case.wake
    assert runs.run_now_handled == case.run_now_handled
    assert (runs.once_run_started is not None) is case.once_started
    assert runs.confirm is case.confirm


@dataclass
class Confirm:
    id: str
    live: list[dict[str, Any]]
    overlap: str | None = None
    singleton: bool = False
    # expected
    start: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    hold: bool = False
    wake: float | None = None


def other_job(name: str) -> dict[str, Any]:
    """A scheduled run of another BackgroundJob's CronJob (same labels would not match)."""
    found = job(name, "scheduled")
    found["metadata"]["ownerReferences"][0]["name"] = "other"
    return found


# fmt: off
CONFIRMS = [
    Confirm("the live read shows nothing more: the manual run starts", [], start=[FIRST],
            hold=True),
    Confirm("Forbid: a scheduled run the cache had not seen: skipped, the CronJob released soon",
            [job("worker-29012345", "scheduled")], events=["RunNowSkipped"], wake=1.0),
    Confirm("singleton: a scheduled run the cache had not seen: skipped",
            [job("worker-29012345", "scheduled")], singleton=True, overlap="Allow",
            events=["RunNowSkipped"], wake=1.0),
    Confirm("Replace: a scheduled run the cache had not seen: deleted, the manual run starts",
            [job("worker-29012345", "scheduled")], overlap="Replace", start=[FIRST],
            delete=["worker-29012345"]),
    Confirm("a finished scheduled run the cache had not seen: the manual run starts",
            [job("worker-29012345", "scheduled", state="succeeded")], start=[FIRST], hold=True),
    Confirm("another BackgroundJob's run in the live list: not ours, the manual run starts",
            [other_job("other-29012345")], start=[FIRST], hold=True),
]
# fmt: on


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CONFIRMS])
def test_a_manual_run_is_decided_again_from_the_live_runs(case: Confirm) -> None:
    spec: dict[str, Any] = {"trigger": NIGHTLY, "singleton": case.singleton}
    if case.overlap:
        spec["overlap"] = case.overlap
    bgj = parse(body(annotations={"bgjob.dev/run-now": "first"}, **spec))
    planned = plan_runs(bgj, [], NOW)  # the cache shows no run
    assert [j["metadata"]["name"] for j in planned.start] == [FIRST]
    assert planned.confirm

    runs = confirm_runs(bgj, [], case.live, NOW)

    assert [j["metadata"]["name"] for j in runs.start] == case.start
    assert sorted(runs.delete) == sorted(case.delete)
    assert [e.reason for e in runs.events] == case.events
    assert runs.hold_schedule is case.hold
    assert runs.run_now_handled == "first"
    assert runs.confirm is False
    if case.wake is not None:
        assert runs.wake_after == case.wake


def test_a_schedule_looks_again_just_after_its_next_tick() -> None:
    bgj = parse(body(trigger=NIGHTLY))
    runs = plan_runs(bgj, [], datetime(2026, 3, 1, 2, 59, tzinfo=UTC))
    assert runs.wake_after == 61.0


def test_the_once_run_carries_the_backgroundjobs_uid_and_generation() -> None:
    bgj = parse(body(trigger=ONCE_NOW, generation=4))
    [started] = plan_runs(bgj, [], NOW).start
    assert started["metadata"]["name"] == "worker"
    assert started["metadata"]["annotations"]["bgjob.dev/once-run"] == f"{UID}/4"
    assert once_identity(bgj) == f"{UID}/4"
    assert started["metadata"]["labels"]["bgjob.dev/run"] == "once"


# --- why a run failed: its pods --------------------------------------------------------

BACKOFF = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE = ("DeadlineExceeded", "Job was active longer than specified deadline")


def terminated(code: int, reason: str = "Error", at: str = "12:03", **extra: Any) -> Any:
    """A container state as the kubelet reports it."""
    return {
        "terminated": {
            "exitCode": code,
            "reason": reason,
            "startedAt": "2026-03-01T12:00:00Z",
            "finishedAt": f"2026-03-01T{at}:00Z",
            "containerID": "containerd://0f1e",
            **extra,
        }
    }


def pod(
    name: str = "nightly-x7k2p",
    phase: str = "Failed",
    *,
    worker: Any = None,
    inits: dict[str, Any] | None = None,
    sidecars: dict[str, Any] | None = None,
    others: dict[str, Any] | None = None,
    reason: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """A run's pod: the worker's state, init containers', native sidecars', others'."""

    def statuses(states: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"name": n, "state": s, "lastState": {}, "ready": False, "restartCount": 0}
            for n, s in states.items()
        ]

    inits, sidecars = inits or {}, sidecars or {}
    status: dict[str, Any] = {
        "phase": phase,
        "containerStatuses": statuses(
            {"worker": worker or {"waiting": {"reason": "PodInitializing"}}, **(others or {})}
        ),
    }
    if inits or sidecars:
        status["initContainerStatuses"] = statuses({**inits, **sidecars})
    if reason:
        status.update(reason=reason, message=message)
    init_specs = [{"name": n, "image": "busybox"} for n in inits]
    init_specs += [{"name": n, "image": "envoy", "restartPolicy": "Always"} for n in sidecars]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "creationTimestamp": "2026-03-01T12:00:00Z",
            "labels": {"batch.kubernetes.io/job-name": "nightly"},
        },
        "spec": {"initContainers": init_specs, "containers": [{"name": "worker"}]},
        "status": status,
    }


@dataclass
class Failure:
    id: str
    pods: list[dict[str, Any]]
    job: tuple[str, str] = BACKOFF
    # expected: lastRun's reason, message and exitCode
    reason: str = "BackoffLimitExceeded"
    message: str | None = None
    exit_code: int | None = None


# fmt: off
FAILURES = [
    Failure("exit 42", [pod(worker=terminated(42))],
            message="container worker exited with code 42 (Error)", exit_code=42),
    Failure("OOMKilled: the reason becomes OOMKilled", [pod(worker=terminated(137, "OOMKilled"))],
            reason="OOMKilled", message="container worker was OOMKilled (exit code 137)",
            exit_code=137),
    Failure("killed by a signal the runtime reported", [pod(worker=terminated(143, signal=15))],
            message="container worker was killed by SIGTERM (signal 15, exit code 143)",
            exit_code=143),
    Failure("exit code 128+n, no signal reported: named", [pod(worker=terminated(137))],
            message="container worker exited with code 137 (Error, 128+SIGKILL)", exit_code=137),
    Failure("exit code above 128+64: not a signal", [pod(worker=terminated(255))],
            message="container worker exited with code 255 (Error)", exit_code=255),
    Failure("retries: the most recent failed pod tells", [
                pod("nightly-aaaaa", worker=terminated(1, at="12:01")),
                pod("nightly-zzzzz", worker=terminated(42, at="12:03")),
                pod("nightly-mmmmm", worker=terminated(2, at="12:02")),
            ], message="container worker exited with code 42 (Error)", exit_code=42),
    Failure("pods that succeeded or still run do not count", [
                pod("nightly-ok", "Succeeded", worker=terminated(0, "Completed", at="12:09")),
                pod("nightly-run", "Running", worker={"running": {}}),
                pod("nightly-bad", worker=terminated(3, at="12:01")),
            ], message="container worker exited with code 3 (Error)", exit_code=3),
    Failure("no pods left (ttlSecondsAfterFinished): the Job's own", [],
            message=BACKOFF[1]),
    Failure("only pods that succeeded: the Job's own",
            [pod(phase="Succeeded", worker=terminated(0, "Completed"))], message=BACKOFF[1]),
    Failure("an init container failed: the worker never ran",
            [pod(inits={"migrate": terminated(3)})],
            message="init container migrate exited with code 3 (Error)", exit_code=3),
    Failure("the worker failed, a native sidecar was stopped after it: the worker's",
            [pod(worker=terminated(2), sidecars={"proxy": terminated(143, at="12:04")})],
            message="container worker exited with code 2 (Error)", exit_code=2),
    Failure("the worker exited 0, another container failed: that one",
            [pod(worker=terminated(0, "Completed"), others={"uploader": terminated(1)})],
            message="container uploader exited with code 1 (Error)", exit_code=1),
    Failure("a start error is more specific than the Job's reason",
            [pod(worker=terminated(128, "StartError"))], reason="StartError",
            message="container worker exited with code 128 (StartError)", exit_code=128),
    Failure("evicted: the pod's reason and message first",
            [pod(worker=terminated(137), reason="Evicted",
                 message="The node was low on resource: memory. ")],
            reason="Evicted",
            message="pod was Evicted: The node was low on resource: memory.; "
                    "container worker exited with code 137 (Error, 128+SIGKILL)",
            exit_code=137),
    Failure("the Job's deadline ended it: the Job's reason, its message first",
            [pod(worker=terminated(143))], job=DEADLINE, reason="DeadlineExceeded",
            message="Job was active longer than specified deadline; "
                    "container worker exited with code 143 (Error, 128+SIGTERM)",
            exit_code=143),
    Failure("the Job's deadline, the worker OOMKilled on the way: still DeadlineExceeded",
            [pod(worker=terminated(137, "OOMKilled"))], job=DEADLINE, reason="DeadlineExceeded",
            message="Job was active longer than specified deadline; "
                    "container worker was OOMKilled (exit code 137)",
            exit_code=137),
]
# fmt: on


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in FAILURES])
def test_why_a_run_failed(case: Failure) -> None:
    failure = run_failure(case.pods)
    job_reason, job_message = case.job

    assert failure_reason(job_reason, failure) == case.reason
    assert failure_message(job_reason, job_message, failure) == case.message
    assert (failure.exit_code if failure else None) == case.exit_code
    # The reconciler keeps only what is read of each pod: the same answer.
    assert run_failure([trim_pod(p) for p in case.pods]) == failure


def test_a_trimmed_pod_keeps_no_spec_env_logs_or_messages_of_its_containers() -> None:
    raw = pod(worker=terminated(1, message="secret=hunter2 in the last log line"))
    raw["spec"]["containers"][0]["env"] = [{"name": "TOKEN", "value": "hunter2"}]
    assert "hunter2" not in repr(trim_pod(raw))


def test_the_run_pods_selector_is_the_job_controllers_label() -> None:
    assert run_pods_selector("nightly-29012345") == "batch.kubernetes.io/job-name=nightly-29012345"


# --- once means once, also across trigger changes ----------------------------------------
#
# Each row replays a BackgroundJob's life through the reconciler against an in-memory
# API server: the triggers it is edited to, one after the other (a few passes each,
# Jobs finishing and, where the row says so, removed by ttlSecondsAfterFinished
# between them), and counts how often the once-run's Job was created.


class Cluster:
    """An in-memory API server that keeps what the reconciler writes."""

    def __init__(self, bgj: dict[str, Any]) -> None:
        self.bgj = bgj
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.created: list[str] = []
        self.version = 10

    def _stamp(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj = copy.deepcopy(manifest)
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.version)
        meta.setdefault("creationTimestamp", "2026-03-01T12:04:00Z")
        self.objects[(obj["kind"], meta["name"])] = obj
        return copy.deepcopy(obj)

    def apply(
        self, manifest: dict[str, Any], manager: str = "", *, create_only: bool = False
    ) -> dict[str, Any]:
        if create_only and (manifest["kind"], manifest["metadata"]["name"]) in self.objects:
            raise ApiError(409, "Conflict", "the object has been modified")
        return self._stamp(manifest)

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.created.append(manifest["metadata"]["name"])
        return self._stamp(manifest)

    def delete(self, kind: str, namespace: str, name: str, propagation: str) -> None:
        self.objects.pop((kind, name), None)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found else None

    def list(self, kind: str, label_selector: str, namespace: str | None = None) -> list[Any]:
        return [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == kind]

    def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.bgj["status"] = copy.deepcopy(status)
        return copy.deepcopy(self.bgj)

    def event(self, involved: dict[str, Any], kind: str, reason: str, message: str) -> None:
        pass

    def finish_runs(self) -> None:
        """Every Job's pods exit 0 (the Job controller's work)."""
        for (kind, _), obj in self.objects.items():
            if kind == "Job" and not (obj.get("status") or {}).get("conditions"):
                obj["status"] = {
                    "startTime": "2026-03-01T12:04:00Z",
                    "completionTime": "2026-03-01T12:04:30Z",
                    "conditions": [{"type": "Complete", "status": "True"}],
                }

    def expire_runs(self) -> None:
        """ttlSecondsAfterFinished removes the finished Jobs."""
        for key in [k for k, o in self.objects.items() if k[0] == "Job" and is_finished(o)]:
            del self.objects[key]

    def reconcile(self) -> None:
        """One pass, on a cache that sees everything the API server holds."""
        store = Store()
        store.put_bgjob(copy.deepcopy(self.bgj))
        for obj in self.objects.values():
            store.put_child(copy.deepcopy(obj), obj["kind"], obj["apiVersion"])
        Reconciler(cast(Kube, self), store, clock=lambda: NOW).reconcile(("shop", "worker"))


@dataclass
class Flip:
    id: str
    triggers: list[dict[str, Any]]
    singleton: bool = False
    expire: bool = False  # the finished Jobs are removed after each trigger
    run_now: str | None = None  # annotated all along, handled at the start
    once_runs: int = 1  # how often the once-run's Job is created, in all
    state: str = "Succeeded"  # the BackgroundJob's state at the end


# fmt: off
FLIPS = [
    Flip("once ran; continuous; once again: not again", [ONCE_NOW, {"continuous": {}}, ONCE_NOW]),
    Flip("once ran; singleton continuous; once again: not again",
         [ONCE_NOW, {"continuous": {}}, ONCE_NOW], singleton=True),
    Flip("once ran; schedule; once again: not again", [ONCE_NOW, NIGHTLY, ONCE_NOW]),
    Flip("once ran; schedule, its Job gone after its TTL; once again: not again",
         [ONCE_NOW, NIGHTLY, ONCE_NOW], expire=True),
    Flip("once ran; queue; once again: not again",
         [ONCE_NOW, {"queue": {"redis": {"url": "redis://redis.shop:6379/0", "list": "jobs"}}},
          ONCE_NOW]),
    Flip("once ran; continuous; schedule; once again: not again",
         [ONCE_NOW, {"continuous": {}}, NIGHTLY, ONCE_NOW], expire=True),
    Flip("once ran; another once spec (delay): not again",
         [ONCE_NOW, {"once": {"delaySeconds": 1}}]),
    Flip("a run-now handled before; continuous; once: the old request starts nothing more",
         [NIGHTLY, {"continuous": {}}, ONCE_NOW], run_now="first", once_runs=1),
    Flip("continuous first, then once: it never ran, so it runs", [{"continuous": {}}, ONCE_NOW]),
]
# fmt: on


@pytest.mark.parametrize("flip", [pytest.param(f, id=f.id) for f in FLIPS])
def test_once_means_once_across_trigger_changes(flip: Flip) -> None:
    annotations = {"bgjob.dev/run-now": flip.run_now} if flip.run_now else None
    cluster = Cluster(
        body(trigger=flip.triggers[0], singleton=flip.singleton, annotations=annotations)
    )
    for generation, trigger in enumerate(flip.triggers, start=1):
        cluster.bgj["spec"]["trigger"] = trigger
        cluster.bgj["metadata"]["generation"] = generation
        for _ in range(3):
            cluster.reconcile()
            cluster.finish_runs()
        if flip.expire:
            cluster.expire_runs()
    cluster.reconcile()

    assert cluster.created.count("worker") == flip.once_runs, cluster.created
    assert cluster.bgj["status"]["state"] == flip.state, cluster.bgj["status"]["conditions"]
    assert cluster.bgj["status"]["onceRunStarted"]


@settings(max_examples=200, deadline=None)
@given(
    cron=st.sampled_from(["*/7 * * * *", "0 3 * * *", "30 2 * * 0", "0 0 31 * *", "@hourly"]),
    zone=st.sampled_from(["UTC", "Europe/Madrid", "America/New_York"]),
    steps=st.lists(st.integers(min_value=-3600, max_value=40 * 86400), min_size=1, max_size=12),
)
def test_the_next_firing_remembered_is_what_croniter_says_for_any_moment(
    cron: str, zone: str, steps: list[int]
) -> None:
    # Across DST changes (2026-03-29 in Madrid, 03-08 in New York), backwards and forwards.
    start = datetime(2026, 3, 1, 0, 0, 0, 500000, tzinfo=UTC)
    for seconds in steps:
        now = start + timedelta(seconds=seconds)
        expected = croniter(cron, now.astimezone(ZoneInfo(zone))).get_next(datetime)
        assert next_cron_time(cron, zone, now) == expected
