"""Observed children in, status out: what `kubectl get bgj` and `kubectl wait` show."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from specs import CONTINUOUS, ONCE, SCHEDULE, bgjob, body, queue

from bgjob.api.models import BackgroundJobStatus, Condition, parse
from bgjob.runs import RunFailure
from bgjob.status import Observed, Problem, status_from, unrecorded_failure

NOW = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)
EARLIER = "2026-01-14T10:00:00Z"


def deployment(
    *,
    generation: int = 2,
    observed: int = 2,
    replicas: int = 2,
    updated: int = 2,
    ready: int = 2,
    kind: str = "Deployment",
) -> dict[str, Any]:
    status = {
        "observedGeneration": observed,
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
    }
    if kind == "StatefulSet":
        status.update(currentRevision="worker-1", updateRevision="worker-1")
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "worker", "generation": generation},
        "status": status,
    }


def cronjob(last_schedule: str | None = None) -> dict[str, Any]:
    status = {"lastScheduleTime": last_schedule} if last_schedule else {}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "worker"},
        "status": status,
    }


def job(
    name: str,
    *,
    start: str = "2026-01-14T23:00:00Z",
    active: int = 0,
    ready: int = 0,
    complete: str | None = None,
    failed: tuple[str, str] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": start, "active": active, "ready": ready}
    conditions = []
    if complete:
        status["completionTime"] = complete
        conditions.append({"type": "Complete", "status": "True", "lastTransitionTime": complete})
    if failed:
        when, reason = failed
        conditions.append(
            {
                "type": "Failed",
                "status": "True",
                "lastTransitionTime": when,
                "reason": reason,
                "message": "Job has reached the specified backoff limit",
            }
        )
    if conditions:
        status["conditions"] = conditions
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "status": status}


def conditions(status: BackgroundJobStatus) -> dict[str, Condition]:
    return {c.type: c for c in status.conditions or []}


def truth(status: BackgroundJobStatus) -> dict[str, str]:
    """Condition type -> status, e.g. {'Ready': 'True', ...}."""
    return {c.type: c.status for c in status.conditions or []}


# --- continuous and queue ---------------------------------------------------------------


def test_a_rolled_out_continuous_worker_is_running_and_ready() -> None:
    status = status_from(
        bgjob(trigger=CONTINUOUS, concurrency=2, generation=3),
        Observed(deployment()),
        NOW,
        desired_replicas=2,
    )
    assert status.state == "Running"
    assert truth(status) == {"Ready": "True", "Progressing": "False", "Degraded": "False"}
    assert (status.replicas, status.ready_replicas, status.desired_replicas) == (2, 2, 2)
    assert status.workload is not None
    assert (status.workload.kind, status.workload.name) == ("Deployment", "worker")
    assert status.observed_generation == 3
    assert status.trigger == "continuous"
    assert {c.observed_generation for c in status.conditions or []} == {3}


@pytest.mark.parametrize(
    ("workload", "reason"),
    [
        pytest.param(
            deployment(generation=3, observed=2),
            "RollingOut",
            id="controller has not seen the change",
        ),
        pytest.param(deployment(updated=1, ready=1), "RollingOut", id="pods being replaced"),
        pytest.param(deployment(replicas=3), "RollingOut", id="old pods terminating"),
        pytest.param(deployment(ready=1), "WaitingForPods", id="pods not ready yet"),
        pytest.param(None, "Creating", id="workload not created yet"),
    ],
)
def test_a_continuous_worker_on_its_way_is_progressing_and_not_ready(
    workload: dict[str, Any] | None, reason: str
) -> None:
    status = status_from(
        bgjob(trigger=CONTINUOUS, concurrency=2), Observed(workload), NOW, desired_replicas=2
    )
    assert status.state == "Running"
    ready = conditions(status)["Ready"]
    assert (ready.status, ready.reason) == ("False", reason)
    assert conditions(status)["Progressing"].status == "True"
    assert conditions(status)["Degraded"].status == "False"


def test_a_singleton_statefulset_mid_revision_is_not_ready() -> None:
    workload = deployment(kind="StatefulSet", replicas=1, updated=1, ready=1)
    workload["status"]["updateRevision"] = "worker-2"
    status = status_from(
        bgjob(trigger=CONTINUOUS, singleton=True), Observed(workload), NOW, desired_replicas=1
    )
    assert conditions(status)["Ready"].status == "False"


def test_a_suspended_worker_scaled_to_zero_says_suspended() -> None:
    status = status_from(
        bgjob(trigger=CONTINUOUS, concurrency=2, suspend=True),
        Observed(deployment(replicas=0, updated=0, ready=0)),
        NOW,
        desired_replicas=0,
    )
    assert status.state == "Suspended"
    assert conditions(status)["Ready"].status == "True"
    assert status.desired_replicas == 0


def test_an_idle_queue_at_zero_workers_is_idle_and_ready() -> None:
    status = status_from(
        bgjob(trigger=queue(), concurrency=5),
        Observed(deployment(replicas=0, updated=0, ready=0)),
        NOW,
        desired_replicas=0,
        queue_length=0,
    )
    assert status.state == "Idle"
    assert conditions(status)["Ready"].status == "True"
    assert (status.replicas, status.desired_replicas, status.queue_length) == (0, 0, 0)


def test_a_busy_queue_is_running_and_shows_the_backlog_the_scaler_read() -> None:
    status = status_from(
        bgjob(trigger=queue(), concurrency=5, status={"queueLength": 4}),
        Observed(deployment(replicas=3, updated=3, ready=3)),
        NOW,
        desired_replicas=3,
        queue_length=12,
    )
    assert status.state == "Running"
    assert status.queue_length == 12
    assert status.ready_replicas == 3


# --- schedule ---------------------------------------------------------------------------


def test_a_schedule_with_an_active_run_is_running() -> None:
    status = status_from(
        bgjob(trigger=SCHEDULE, concurrency=2),
        Observed(cronjob(EARLIER), (job("worker-29012345", active=2, ready=1),)),
        NOW,
    )
    assert status.state == "Running"
    assert status.active_runs == ["worker-29012345"]
    assert (status.replicas, status.ready_replicas, status.desired_replicas) == (2, 1, 2)
    assert status.last_schedule_time == EARLIER


@pytest.mark.parametrize(
    ("now", "next_run"),
    [
        pytest.param(
            datetime(2026, 1, 15, 0, 0, tzinfo=UTC),
            "2026-01-15T02:00:00Z",
            id="winter: CET is UTC+1",
        ),
        pytest.param(
            datetime(2026, 7, 15, 0, 0, tzinfo=UTC),
            "2026-07-15T01:00:00Z",
            id="summer: CEST is UTC+2",
        ),
        pytest.param(
            datetime(2026, 1, 15, 2, 30, tzinfo=UTC),
            "2026-01-16T02:00:00Z",
            id="today's run passed",
        ),
    ],
)
def test_a_waiting_schedule_is_scheduled_with_the_next_run_in_its_time_zone(
    now: datetime, next_run: str
) -> None:
    bgj = bgjob(trigger={"schedule": {"cron": "0 3 * * *", "timeZone": "Europe/Madrid"}})
    status = status_from(bgj, Observed(cronjob()), now)
    assert status.state == "Scheduled"
    assert status.next_run_time == next_run
    assert conditions(status)["Ready"].status == "True"
    assert status.active_runs is None


def test_a_suspended_schedule_has_no_next_run() -> None:
    status = status_from(bgjob(trigger=SCHEDULE, suspend=True), Observed(cronjob()), NOW)
    assert status.state == "Suspended"
    assert status.next_run_time is None


def test_last_run_is_the_latest_finished_run() -> None:
    runs = (
        job("worker-1", complete="2026-01-12T03:05:00Z"),
        job("worker-3", failed=("2026-01-14T03:09:00Z", "BackoffLimitExceeded")),
        job("worker-2", complete="2026-01-13T03:05:00Z"),
        job("worker-4", active=1),
    )
    status = status_from(bgjob(trigger=SCHEDULE), Observed(cronjob(), runs), NOW)
    assert status.last_run is not None
    assert (status.last_run.name, status.last_run.result) == ("worker-3", "Failed")
    assert status.last_run.reason == "BackoffLimitExceeded"
    assert status.last_successful_time == "2026-01-13T03:05:00Z"
    assert status.active_runs == ["worker-4"]


def test_last_run_survives_its_job_being_deleted_by_history_limits() -> None:
    previous = {"name": "worker-1", "result": "Succeeded", "completionTime": EARLIER}
    status = status_from(
        bgjob(trigger=SCHEDULE, status={"lastRun": previous, "lastSuccessfulTime": EARLIER}),
        Observed(cronjob()),
        NOW,
    )
    assert status.last_run is not None
    assert status.last_run.name == "worker-1"
    assert status.last_successful_time == EARLIER


# --- once -------------------------------------------------------------------------------

DUE = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)


def test_a_once_run_not_due_yet_is_waiting_with_its_due_time() -> None:
    status = status_from(bgjob(trigger=ONCE), Observed(), NOW, due=DUE)
    assert status.state == "Waiting"
    assert status.next_run_time == "2026-01-15T03:00:00Z"
    assert "Complete" not in truth(status)
    assert "Failed" not in truth(status)


def test_a_once_run_in_progress_is_running() -> None:
    status = status_from(
        bgjob(trigger=ONCE, concurrency=3),
        Observed(runs=(job("worker", active=3, ready=3),)),
        NOW,
        due=DUE,
    )
    assert status.state == "Running"
    assert status.active_runs == ["worker"]
    assert (status.replicas, status.desired_replicas) == (3, 3)
    assert status.next_run_time is None


def test_a_succeeded_once_run_is_complete() -> None:
    status = status_from(
        bgjob(trigger=ONCE),
        Observed(runs=(job("worker", complete="2026-01-14T23:05:00Z"),)),
        NOW,
    )
    assert status.state == "Succeeded"
    assert truth(status)["Complete"] == "True"
    assert truth(status)["Ready"] == "True"
    assert "Failed" not in truth(status)
    assert "Stalled" not in truth(status)
    assert status.last_run is not None
    assert status.last_run.result == "Succeeded"
    assert status.last_successful_time == "2026-01-14T23:05:00Z"


def test_a_failed_once_run_is_failed_stalled_and_not_ready() -> None:
    status = status_from(
        bgjob(trigger=ONCE),
        Observed(runs=(job("worker", failed=("2026-01-14T23:09:00Z", "BackoffLimitExceeded")),)),
        NOW,
    )
    assert status.state == "Failed"
    assert truth(status)["Failed"] == "True"
    assert truth(status)["Stalled"] == "True"
    assert truth(status)["Ready"] == "False"
    assert "Complete" not in truth(status)
    assert "BackoffLimitExceeded" in conditions(status)["Ready"].message
    assert status.last_run is not None
    assert status.last_run.reason == "BackoffLimitExceeded"


def test_a_failed_once_run_is_not_progressing() -> None:
    # The run is over and nothing will change it without the user: Stalled, not Progressing.
    status = status_from(
        bgjob(trigger=ONCE),
        Observed(runs=(job("worker", failed=("2026-01-14T23:09:00Z", "BackoffLimitExceeded")),)),
        NOW,
    )
    assert truth(status)["Progressing"] == "False"


def test_a_once_result_is_kept_after_its_job_is_cleaned_up() -> None:
    previous = {"name": "worker", "result": "Succeeded", "completionTime": EARLIER}
    status = status_from(bgjob(trigger=ONCE, status={"lastRun": previous}), Observed(), NOW)
    assert status.state == "Succeeded"
    assert truth(status)["Complete"] == "True"


# --- why a run failed ---------------------------------------------------------------------

FAILED_AT = "2026-01-14T23:09:00Z"
EXIT_42 = RunFailure(pod="worker-x7k2p", container="worker", exit_code=42, reason="Error")
OOM = RunFailure(pod="worker-x7k2p", container="worker", exit_code=137, reason="OOMKilled")


def test_a_failed_once_run_shows_its_exit_code_in_last_run() -> None:
    status = status_from(
        bgjob(trigger=ONCE),
        Observed(runs=(job("worker", failed=(FAILED_AT, "BackoffLimitExceeded")),)),
        NOW,
        failures={"worker": EXIT_42},
    )
    assert status.last_run is not None
    assert status.last_run.wire() == {
        "name": "worker",
        "startTime": "2026-01-14T23:00:00Z",
        "completionTime": FAILED_AT,
        "result": "Failed",
        "reason": "BackoffLimitExceeded",
        "message": "container worker exited with code 42 (Error)",
        "exitCode": 42,
    }
    # The conditions name the reason; lastRun (and `kubectl bgj why`) says the rest.
    assert conditions(status)["Failed"].message == "run worker failed: BackoffLimitExceeded"


def test_an_oom_killed_once_run_fails_with_reason_oom_killed() -> None:
    status = status_from(
        bgjob(trigger=ONCE),
        Observed(runs=(job("worker", failed=(FAILED_AT, "BackoffLimitExceeded")),)),
        NOW,
        failures={"worker": OOM},
    )
    assert status.last_run is not None
    assert (status.last_run.reason, status.last_run.exit_code) == ("OOMKilled", 137)
    assert status.last_run.message == "container worker was OOMKilled (exit code 137)"
    assert conditions(status)["Failed"].reason == "OOMKilled"
    assert conditions(status)["Ready"].message == "run worker failed: OOMKilled"


def test_a_failure_whose_pods_were_gone_keeps_the_jobs_reason_and_message() -> None:
    status = status_from(
        bgjob(trigger=ONCE),
        Observed(runs=(job("worker", failed=(FAILED_AT, "BackoffLimitExceeded")),)),
        NOW,
    )
    assert status.last_run is not None
    assert status.last_run.exit_code is None
    assert status.last_run.message == "Job has reached the specified backoff limit"
    assert conditions(status)["Failed"].message == "run worker failed: BackoffLimitExceeded"


def test_a_recorded_failure_stays_as_recorded_while_its_job_is_still_there() -> None:
    # The next pass reads no pods: what the first one learned must not be lost.
    recorded = {
        "name": "worker",
        "startTime": "2026-01-14T23:00:00Z",
        "completionTime": FAILED_AT,
        "result": "Failed",
        "reason": "OOMKilled",
        "message": "container worker was OOMKilled (exit code 137)",
        "exitCode": 137,
    }
    status = status_from(
        bgjob(trigger=ONCE, status={"lastRun": recorded}),
        Observed(runs=(job("worker", failed=(FAILED_AT, "BackoffLimitExceeded")),)),
        NOW,
    )
    assert status.last_run is not None
    assert status.last_run.wire() == recorded


def test_a_last_run_a_later_version_wrote_with_more_fields_still_parses() -> None:
    later = {"name": "worker", "result": "Failed", "exitCode": 1, "signalName": "SIGKILL"}
    bgj = parse(body(trigger=ONCE, status={"lastRun": later}))
    assert bgj.status.last_run is not None
    assert bgj.status.last_run.exit_code == 1


def _failed(name: str, at: str) -> dict[str, Any]:
    return job(name, failed=(at, "BackoffLimitExceeded"))


def _recorded(name: str, result: str, at: str) -> dict[str, Any]:
    return {"lastRun": {"name": name, "result": result, "completionTime": at}}


# (trigger, status, jobs, the run whose pods to read)
PODS_OF = {
    "a failed run not recorded yet": (SCHEDULE, {}, [_failed("w-2", FAILED_AT)], "w-2"),
    "a failed once-run": (ONCE, {}, [_failed("worker", FAILED_AT)], "worker"),
    "recorded already: never read again": (
        SCHEDULE,
        _recorded("w-2", "Failed", FAILED_AT),
        [_failed("w-2", FAILED_AT)],
        None,
    ),
    "a newer failure than the one recorded": (
        SCHEDULE,
        _recorded("w-1", "Failed", EARLIER),
        [_failed("w-2", FAILED_AT)],
        "w-2",
    ),
    "an older failure than the run recorded: not shown, not read": (
        SCHEDULE,
        _recorded("w-3", "Succeeded", "2026-01-14T23:30:00Z"),
        [_failed("w-2", FAILED_AT)],
        None,
    ),
    "the latest run succeeded: nothing to read": (
        SCHEDULE,
        {},
        [_failed("w-1", EARLIER), job("w-2", complete=FAILED_AT)],
        None,
    ),
    "the latest of several failures only": (
        SCHEDULE,
        {},
        [_failed("w-1", EARLIER), _failed("w-2", FAILED_AT)],
        "w-2",
    ),
    "still running: nothing yet": (SCHEDULE, {}, [job("w-2", active=1)], None),
    "no runs": (SCHEDULE, {}, [], None),
    "continuous: no runs recorded": (CONTINUOUS, {}, [_failed("w-2", FAILED_AT)], None),
}


@pytest.mark.parametrize(("trigger", "status", "jobs", "expected"), PODS_OF.values(), ids=PODS_OF)
def test_which_failed_runs_pods_to_read(
    trigger: dict[str, Any], status: dict[str, Any], jobs: list[dict[str, Any]], expected: str
) -> None:
    assert unrecorded_failure(bgjob(trigger=trigger, status=status), jobs) == expected


# --- problems ---------------------------------------------------------------------------


def test_only_a_queue_shows_a_backlog() -> None:
    status = status_from(bgjob(), Observed(deployment()), NOW, desired_replicas=2, queue_length=7)
    assert status.queue_length is None


@pytest.mark.parametrize("trigger", [CONTINUOUS, SCHEDULE, ONCE, queue()])
def test_a_problem_makes_the_job_degraded_and_stalled(trigger: dict[str, Any]) -> None:
    problem = Problem("InvalidTimeZone", "spec.trigger.schedule.timeZone: unknown 'Mars/Base'")
    status = status_from(bgjob(trigger=trigger), Observed(), NOW, problem=problem)
    assert status.state == "Degraded"
    found = conditions(status)
    assert (found["Degraded"].status, found["Degraded"].reason) == ("True", "InvalidTimeZone")
    assert found["Degraded"].message == problem.message
    assert (found["Stalled"].status, found["Stalled"].reason) == ("True", "InvalidTimeZone")
    assert found["Ready"].status == "False"
    assert found["Progressing"].status == "False"


def test_a_problem_retrying_can_fix_is_degraded_but_not_stalled() -> None:
    problem = Problem("ApplyFailed", "Deployment worker was rejected", stalled=False)
    status = status_from(bgjob(), Observed(deployment()), NOW, desired_replicas=2, problem=problem)
    assert status.state == "Degraded"
    assert truth(status)["Degraded"] == "True"
    assert "Stalled" not in truth(status)


def test_a_schedule_that_cannot_be_honoured_shows_no_next_run() -> None:
    problem = Problem("InvalidSchedule", "spec.trigger.schedule.cron: bad")
    status = status_from(bgjob(trigger=SCHEDULE), Observed(cronjob()), NOW, problem=problem)
    assert status.next_run_time is None


# --- lastTransitionTime -----------------------------------------------------------------

THEN = "2026-01-01T00:00:00Z"


def _previous(ready: str) -> dict[str, Any]:
    return {
        "conditions": [
            {
                "type": "Ready",
                "status": ready,
                "reason": "WorkloadReady",
                "lastTransitionTime": THEN,
            },
            {
                "type": "Degraded",
                "status": "False",
                "reason": "AsExpected",
                "lastTransitionTime": THEN,
            },
        ]
    }


def test_last_transition_time_is_kept_while_a_condition_holds() -> None:
    status = status_from(
        bgjob(status=_previous("True")), Observed(deployment()), NOW, desired_replicas=2
    )
    assert conditions(status)["Ready"].last_transition_time == THEN
    assert conditions(status)["Degraded"].last_transition_time == THEN


def test_last_transition_time_moves_when_a_condition_flips() -> None:
    status = status_from(
        bgjob(status=_previous("True")), Observed(deployment(ready=1)), NOW, desired_replicas=2
    )
    assert conditions(status)["Ready"].status == "False"
    assert conditions(status)["Ready"].last_transition_time == "2026-01-15T00:00:00Z"
    assert conditions(status)["Degraded"].last_transition_time == THEN


def test_a_new_condition_gets_the_current_time() -> None:
    status = status_from(bgjob(), Observed(deployment()), NOW, desired_replicas=2)
    assert conditions(status)["Progressing"].last_transition_time == "2026-01-15T00:00:00Z"


def test_an_unchanged_world_gives_an_identical_status() -> None:
    first = status_from(bgjob(), Observed(deployment()), NOW, desired_replicas=2)
    again = status_from(
        bgjob(status=first.wire()),
        Observed(deployment()),
        datetime(2026, 1, 15, 1, 0, tzinfo=UTC),
        desired_replicas=2,
    )
    assert again.wire() == first.wire()


def test_a_manual_run_before_the_once_run_does_not_complete_the_backgroundjob() -> None:
    due = datetime(2026, 2, 1, tzinfo=UTC)
    status = status_from(
        bgjob(trigger=ONCE),
        Observed(runs=(job("worker-m1234abcd", complete="2026-01-14T23:05:00Z"),)),
        NOW,
        due=due,
        once_started=False,
    )
    assert status.state == "Waiting"
    assert status.next_run_time == "2026-02-01T00:00:00Z"
    assert status.last_run is not None and status.last_run.result == "Succeeded"
    assert "Complete" not in truth(status)


REFUSED = (
    'pods "worker-5d9c" is forbidden: violates PodSecurity "restricted:latest": '
    'privileged (container "worker" must not set securityContext.privileged=true)'
)


def _worker_reporting(replica_failure: dict[str, Any], **counts: int) -> Any:
    worker = deployment(**counts)
    worker["status"]["conditions"] = [{"type": "ReplicaFailure", **replica_failure}]
    bgj = bgjob(trigger=CONTINUOUS, concurrency=2)
    return status_from(bgj, Observed(workload=worker), NOW, desired_replicas=2)


def test_pods_the_api_server_refuses_make_the_worker_degraded_with_its_message() -> None:
    failure = {"status": "True", "reason": "FailedCreate", "message": REFUSED}
    status = _worker_reporting(failure, ready=0, updated=0, replicas=0)
    assert status.state == "Degraded"
    degraded = next(c for c in status.conditions or [] if c.type == "Degraded")
    assert (degraded.status, degraded.reason, degraded.message) == ("True", "FailedCreate", REFUSED)
    ready = next(c for c in status.conditions or [] if c.type == "Ready")
    assert ready.status == "False"
    # A quota freed elsewhere lets the pods through without an edit: not Stalled.
    assert all(c.type != "Stalled" for c in status.conditions or [])


def test_a_replica_failure_that_cleared_is_not_degraded() -> None:
    assert _worker_reporting({"status": "False"}).state == "Running"
