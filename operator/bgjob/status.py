"""Observed children in, status out: conditions, state, counts and runs. Pure.

Conditions follow the Kubernetes API conventions and kstatus: ``Ready`` is the
one to wait on, ``Stalled`` says waiting is pointless until the user changes
something, and ``Complete``/``Failed`` mirror a once-run's Job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bgjob.api.models import (
    BackgroundJob,
    BackgroundJobStatus,
    Condition,
    RunRecord,
    State,
    WorkloadRef,
)
from bgjob.api.names import Body
from bgjob.api.times import parse_time, rfc3339
from bgjob.runs import (
    RunFailure,
    failure_message,
    failure_reason,
    finished_condition,
    next_cron_time,
)

__all__ = ["next_cron_time", "parse_time", "rfc3339"]


@dataclass(frozen=True)
class Problem:
    """Why the operator cannot make the cluster match the spec."""

    reason: str
    message: str
    # True when retrying cannot help: only a change by the user can.
    stalled: bool = True


@dataclass(frozen=True)
class Observed:
    """What exists in the cluster for one BackgroundJob."""

    workload: Body | None = None
    runs: tuple[Body, ...] = ()


@dataclass(frozen=True)
class Health:
    """How the workload is doing: Ready, and if not, why."""

    ready: bool
    reason: str
    message: str


# --- runs (Jobs) ------------------------------------------------------------------


def run_record(job: Body, failure: RunFailure | None = None) -> RunRecord:
    """A Job as a run: name, times and, once it ended, the result; for a failed run,
    how its most recent failed pod ended, when ``failure`` says (see bgjob.runs)."""
    status = job.get("status") or {}
    record: dict[str, Any] = {
        "name": job["metadata"]["name"],
        "start_time": status.get("startTime"),
    }
    ended = finished_condition(job)
    if ended is not None and ended["type"] == "Complete":
        record.update(
            result="Succeeded",
            completion_time=status.get("completionTime") or ended.get("lastTransitionTime"),
            reason=ended.get("reason") or "Completed",
        )
    elif ended is not None:
        reason, message = ended.get("reason"), ended.get("message")
        record.update(
            result="Failed",
            completion_time=ended.get("lastTransitionTime"),
            reason=failure_reason(reason, failure),
            message=failure_message(reason, message, failure),
            exit_code=failure.exit_code if failure is not None else None,
        )
    return RunRecord(**record)


def failure_detail(run: RunRecord) -> str:
    """A failed run in a few words, for its Event: the reason, and how its container
    ended when its pods told (the Job's own message adds nothing)."""
    told = run.message if run.exit_code is not None else None
    return ": ".join(filter(None, [run.reason, told]))


def unrecorded_failure(bgj: BackgroundJob, jobs: Sequence[Body]) -> str | None:
    """The failed run ``status.lastRun`` is about to show for the first time, whose pods
    should be read (once) to tell why it failed; None when there is none.

    Once recorded it is never read again: a run already in ``lastRun`` as failed, an
    older one, or a trigger without runs asks for nothing.
    """
    if bgj.spec.trigger.kind not in ("schedule", "once"):
        return None
    previous = bgj.status.last_run
    latest = _latest_finished([run_record(job) for job in jobs], previous)
    if latest is None or latest.result != "Failed":
        return None
    if previous is not None and previous.name == latest.name and previous.result is not None:
        return None
    return latest.name


def _latest_finished(runs: list[RunRecord], previous: RunRecord | None) -> RunRecord | None:
    finished = [run for run in runs if run.result is not None]
    if previous is not None and previous.result is not None:
        # A result stays as recorded: what its pods told was read once, and they may be gone.
        finished = [run for run in finished if run.name != previous.name]
        finished.append(previous)
    if not finished:
        return previous
    return max(finished, key=lambda run: (run.completion_time or "", run.name))


# --- workload health ----------------------------------------------------------------


def _count(status: Body, key: str) -> int:
    return int(status.get(key) or 0)


def service_health(workload: Body, desired: int) -> Health:
    """Whether a Deployment or StatefulSet has rolled out ``desired`` ready pods."""
    status = workload.get("status") or {}
    generation = workload.get("metadata", {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return Health(False, "RollingOut", "the workload controller has not seen the change yet")
    updated = _count(status, "updatedReplicas")
    replicas = _count(status, "replicas")
    ready = _count(status, "readyReplicas")
    rolling = status.get("currentRevision") != status.get("updateRevision")
    if workload["kind"] == "StatefulSet" and desired > 0 and rolling:
        return Health(False, "RollingOut", f"{updated} of {desired} pods updated")
    if updated < desired:
        return Health(False, "RollingOut", f"{updated} of {desired} pods updated")
    if replicas > desired:
        return Health(False, "RollingOut", f"{replicas - desired} old pods still terminating")
    if ready < desired:
        return Health(False, "WaitingForPods", f"{ready} of {desired} pods ready")
    return Health(True, "WorkloadReady", f"{ready} of {desired} pods ready")


def _run_pods(observed: Observed, active: list[str], parallelism: int) -> dict[str, int]:
    """Pods of the active runs: running, ready, and wanted (parallelism per run)."""
    jobs = [j for j in observed.runs if j["metadata"]["name"] in active]
    return {
        "replicas": sum(_count(j.get("status") or {}, "active") for j in jobs),
        "ready_replicas": sum(_count(j.get("status") or {}, "ready") for j in jobs),
        "desired_replicas": parallelism * len(jobs),
    }


# --- conditions ---------------------------------------------------------------------


def condition(
    kind: str, ok: bool, reason: str, message: str, generation: int, now: datetime
) -> Condition:
    return Condition(
        type=kind,
        status="True" if ok else "False",
        reason=reason,
        message=message,
        last_transition_time=rfc3339(now),
        observed_generation=generation,
    )


def keep_transition_times(
    new: list[Condition], previous: list[Condition] | None
) -> list[Condition]:
    """A condition's lastTransitionTime changes only when its status does."""
    before = {c.type: c for c in previous or []}
    kept = []
    for condition in new:
        old = before.get(condition.type)
        if old is not None and old.status == condition.status:
            condition = condition.model_copy(
                update={"last_transition_time": old.last_transition_time}
            )
        kept.append(condition)
    return kept


# --- per trigger -------------------------------------------------------------------


@dataclass
class Facts:
    """What one trigger contributes to the status: fields, health, state, extra conditions."""

    fields: dict[str, Any]
    health: Health
    state: State
    extra: list[tuple[str, bool, str, str]] = field(default_factory=list)


def workload_problem(workload: Body | None) -> Problem | None:
    """The API server refusing the workload's pods (Pod Security admission, a quota):
    the Deployment says so in its ReplicaFailure condition, and nothing else would."""
    for cond in ((workload or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            reason = cond.get("reason") or "FailedCreate"
            # Not stalled: a quota freed elsewhere lets the pods through without an edit.
            return Problem(reason, cond.get("message") or reason, stalled=False)
    return None


def _service_facts(
    bgj: BackgroundJob, workload: Body | None, desired_replicas: int | None
) -> Facts:
    wanted = desired_replicas or 0
    wstatus = (workload or {}).get("status") or {}
    health = (
        service_health(workload, wanted)
        if workload is not None
        else Health(False, "Creating", "the workload is being created")
    )
    if bgj.spec.suspend:
        state: State = "Suspended"
    elif bgj.spec.trigger.queue is not None and wanted == 0:
        state = "Idle"
    else:
        state = "Running"
    fields = {
        "replicas": _count(wstatus, "replicas"),
        "ready_replicas": _count(wstatus, "readyReplicas"),
        "desired_replicas": wanted,
    }
    return Facts(fields, health, state)


def _schedule_facts(
    bgj: BackgroundJob,
    observed: Observed,
    active: list[str],
    last_successful: str | None,
    now: datetime,
    problem: Problem | None,
) -> Facts:
    spec, workload = bgj.spec, observed.workload
    schedule = spec.trigger.schedule
    assert schedule is not None
    fields: dict[str, Any] = _run_pods(observed, active, spec.parallelism)
    cron_status = (workload or {}).get("status") or {}
    fields["last_schedule_time"] = cron_status.get("lastScheduleTime")
    if cron_status.get("lastSuccessfulTime"):
        fields["last_successful_time"] = max(
            filter(None, [last_successful, cron_status["lastSuccessfulTime"]])
        )
    if not spec.suspend and problem is None:
        fields["next_run_time"] = rfc3339(next_cron_time(schedule.cron, schedule.time_zone, now))
    health = (
        Health(True, "Scheduled", f"CronJob {workload['metadata']['name']} is scheduled")
        if workload is not None
        else Health(False, "Creating", "the CronJob is being created")
    )
    state: State = "Suspended" if spec.suspend else ("Running" if active else "Scheduled")
    return Facts(fields, health, state)


def _once_facts(
    bgj: BackgroundJob,
    observed: Observed,
    active: list[str],
    last_run: RunRecord | None,
    due: datetime | None,
    once_started: bool | None,
    once_lost: bool,
) -> Facts:
    spec = bgj.spec
    fields: dict[str, Any] = _run_pods(observed, active, spec.parallelism)
    if active:
        return Facts(fields, Health(True, "Running", f"run {active[0]} is running"), "Running")
    if last_run is not None and last_run.result is not None and once_started is not False:
        succeeded = last_run.result == "Succeeded"
        detail = f"run {last_run.name} {last_run.result.lower()}"
        if last_run.reason and not succeeded:
            detail += f": {last_run.reason}"
        health = Health(succeeded, "RunSucceeded" if succeeded else "RunFailed", detail)
        outcome = ("Complete" if succeeded else "Failed", True, last_run.reason or last_run.result)
        return Facts(
            fields,
            health,
            "Succeeded" if succeeded else "Failed",
            [(*outcome, detail)],
        )
    if once_lost:
        # At most once: a run whose Job vanished unrecorded is not started again by itself.
        detail = (
            f"the run started at {bgj.status.once_run_started} but its Job is gone with no "
            "result recorded (removed by ttlSecondsAfterFinished while the operator was "
            "away?); annotate bgjob.dev/run-now to run it again"
        )
        health = Health(False, "RunFailed", detail)
        return Facts(fields, health, "Failed", [("Failed", True, "RunLost", detail)])
    if spec.suspend:
        return Facts(
            fields, Health(True, "Suspended", "suspended: the run will not start"), "Suspended"
        )
    when = rfc3339(due) if due is not None else "now"
    fields["next_run_time"] = rfc3339(due) if due is not None else None
    return Facts(fields, Health(True, "Waiting", f"the run is due at {when}"), "Waiting")


def conditions_for(
    health: Health,
    problem: Problem | None,
    extra: list[tuple[str, bool, str, str]],
    generation: int,
    now: datetime,
    previous: list[Condition] | None,
) -> list[Condition]:
    """Ready, Progressing, Degraded, Stalled and the trigger's own, transition times kept."""
    # A failed once-run is over: nothing progresses until the user acts.
    progressing = not health.ready and problem is None and health.reason != "RunFailed"
    wanted: list[tuple[str, bool, str, str]] = [
        ("Ready", health.ready, health.reason, health.message),
        (
            "Progressing",
            progressing,
            health.reason if progressing else "Reconciled",
            health.message if progressing else "the cluster matches the spec",
        ),
        (
            "Degraded",
            problem is not None,
            problem.reason if problem else "AsExpected",
            problem.message if problem else "",
        ),
    ]
    if problem is not None and problem.stalled:
        wanted.append(("Stalled", True, problem.reason, problem.message))
    if health.reason == "RunFailed":
        wanted.append(("Stalled", True, health.reason, health.message))
    wanted.extend(extra)
    return keep_transition_times(
        [condition(kind, ok, reason, msg, generation, now) for kind, ok, reason, msg in wanted],
        previous,
    )


# --- the whole status ---------------------------------------------------------------


def status_from(
    bgj: BackgroundJob,
    observed: Observed,
    now: datetime,
    *,
    desired_replicas: int | None = None,
    due: datetime | None = None,
    problem: Problem | None = None,
    queue_length: int | None = None,
    busy_workers: int | None = None,
    last_activity_time: str | None = None,
    once_started: bool | None = None,
    once_lost: bool = False,
    caveat: tuple[str, str] | None = None,
    waiting: str | None = None,
    failures: Mapping[str, RunFailure] | None = None,
) -> BackgroundJobStatus:
    """The status a BackgroundJob should show for what was observed.

    ``desired_replicas`` is the replica count the worker should have (continuous and
    queue); ``due`` is when a once-run that has not started is due; ``queue_length``
    the backlog the scaler last read, ``busy_workers`` and ``last_activity_time`` its
    pool's busy workers and last job start or finish (work-aware); ``once_started``
    False means the once-run itself has not started, so a finished manual run does not
    end the BackgroundJob;
    ``once_lost`` that it started but left neither a Job nor a result; ``caveat`` what
    the scaling engine cannot honour or the backlog cannot tell exactly (the
    ScalingLimited condition: reason, message); ``waiting`` why a
    singleton's new workload has not started yet; ``failures`` how the failed runs
    whose pods were read ended, by Job name (see ``unrecorded_failure``).
    """
    previous = bgj.status
    trigger = bgj.spec.trigger.kind
    failures = failures or {}
    runs = [run_record(job, failures.get(job["metadata"]["name"])) for job in observed.runs]
    active = sorted(run.name for run in runs if run.result is None)
    last_run = _latest_finished(runs, previous.last_run)
    successes = [r.completion_time for r in runs if r.result == "Succeeded" and r.completion_time]
    if previous.last_successful_time:
        successes.append(previous.last_successful_time)

    fields: dict[str, Any] = {
        "observed_generation": bgj.metadata.generation,
        "trigger": trigger,
        "queue_length": queue_length if trigger == "queue" else None,
        "busy_workers": busy_workers if trigger == "queue" else None,
        "last_activity_time": last_activity_time if trigger == "queue" else None,
        "run_now_handled": previous.run_now_handled,
        # The record of the last run outlives a trigger without runs: back to once,
        # it tells how the once-run went (and that it ran).
        "last_run": last_run,
        "once_run_started": previous.once_run_started,
        "active_runs": active or None,
        "last_successful_time": max(successes) if successes else None,
    }
    workload = observed.workload
    if workload is not None:
        fields["workload"] = WorkloadRef(
            api_version=workload["apiVersion"],
            kind=workload["kind"],
            name=workload["metadata"]["name"],
        )

    if trigger in ("continuous", "queue"):
        facts = _service_facts(bgj, workload, desired_replicas)
    elif trigger == "schedule":
        facts = _schedule_facts(bgj, observed, active, fields["last_successful_time"], now, problem)
    else:
        facts = _once_facts(bgj, observed, active, last_run, due, once_started, once_lost)
    fields.update(facts.fields)

    problem = problem or workload_problem(workload)
    health, state = facts.health, facts.state
    if waiting is not None:
        health = Health(False, "WaitingForOldPods", waiting)
    if problem is not None:
        state = "Degraded"
        health = Health(False, problem.reason, problem.message)
    if caveat is not None:
        facts.extra.append(("ScalingLimited", True, *caveat))
    fields["conditions"] = conditions_for(
        health, problem, facts.extra, bgj.metadata.generation, now, previous.conditions
    )
    fields["state"] = state
    return BackgroundJobStatus(**fields)
