"""Runs, decided like the CronJob controller's syncCronJob: one table, one row per case.

Each row gives the BackgroundJob (trigger, singleton, overlap, suspend, run-now
annotation, what status already recorded), the Jobs that exist, and the clock;
and expects the runs started and deleted, the events, whether the CronJob is
held back, when to look again, and what status records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from specs import CREATED, body

from bgjob.api.models import parse
from bgjob.runs import once_identity, plan_runs
from bgjob.workloads.runs import manual_run_name

UID = "0b7c3e2a-uid"
CREATED_AT = datetime.fromisoformat(CREATED.replace("Z", "+00:00"))
NOW = CREATED_AT + timedelta(minutes=5)
NIGHTLY = {"schedule": {"cron": "0 3 * * *"}}
ONCE_NOW: dict[str, Any] = {"once": {}}
ONCE_LATER = {"once": {"delaySeconds": 600}}  # due at CREATED + 10 minutes
ONCE_AT_PAST = {"once": {"at": "2026-03-01T11:00:00Z"}}
FIRST, SECOND = manual_run_name(parse(body()), "first"), manual_run_name(parse(body()), "second")


def job(
    name: str,
    run: str,
    *,
    state: str = "active",
    created: str = "2026-03-01T12:01:00Z",
    completed: str = "2026-03-01T12:02:00Z",
    deleting: bool = False,
) -> dict[str, Any]:
    """A run's Job: ours (once, manual) carry our owner reference; scheduled ones the CronJob's."""
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
    # expected
    start: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    hold: bool = False
    wake: float | None = None
    run_now_handled: str | None = None
    once_started: bool = False


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
         delete=["worker-29012345"], run_now_handled="first"),
    Case("run-now, Allow: starts next to the scheduled run", NIGHTLY, overlap="Allow",
         run_now="first", jobs=[job("worker-29012345", "scheduled")], start=[FIRST],
         run_now_handled="first"),
    Case("run-now, finished runs do not count as active", NIGHTLY, run_now="first",
         jobs=[job("worker-29012345", "scheduled", state="succeeded")], start=[FIRST],
         run_now_handled="first", hold=True),
    Case("run-now, a run still being deleted counts as active", NIGHTLY, run_now="first",
         jobs=[job("worker-29012345", "scheduled", deleting=True)], events=["RunNowSkipped"],
         run_now_handled="first"),
    Case("run-now, suspended schedule: runs anyway, like kubectl create job --from", NIGHTLY,
         suspend=True, run_now="first", start=[FIRST], run_now_handled="first", hold=True),
    Case("run-now on continuous: ignored with a warning", {"continuous": {}}, run_now="first",
         events=["RunNowIgnored"], run_now_handled="first"),
    Case("run-now on once, singleton, the once-run active: skipped", ONCE_NOW, singleton=True,
         run_now="first", jobs=[job("worker", "once")], events=["RunNowSkipped"],
         run_now_handled="first"),
    Case("run-now on once, singleton, the once-run starting this pass: skipped", ONCE_NOW,
         singleton=True, run_now="first", start=["worker"], events=["RunNowSkipped"],
         run_now_handled="first", once_started=True),
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

    runs = plan_runs(bgj, case.jobs, case.now)

    assert [j["metadata"]["name"] for j in runs.start] == case.start
    assert sorted(runs.delete) == sorted(case.delete)
    assert [e.reason for e in runs.events] == case.events
    assert runs.hold_schedule is case.hold
    if "schedule" not in case.trigger:
        assert runs.wake_after == case.wake
    assert runs.run_now_handled == case.run_now_handled
    assert (runs.once_run_started is not None) is case.once_started


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
