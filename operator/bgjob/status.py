"""Observed children in, status out: conditions, state, counts and runs. Pure.

Conditions follow the Kubernetes API conventions and kstatus: ``Ready`` is the
one to wait on, ``Stalled`` says waiting is pointless until the user changes
something, and ``Complete``/``Failed`` mirror a once-run's Job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from bgjob.api.models import (
    BackgroundJob,
    BackgroundJobStatus,
    Condition,
    RunRecord,
    State,
    WorkloadRef,
)

Body = dict[str, Any]


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


def rfc3339(moment: datetime) -> str:
    """A timestamp as Kubernetes writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    """Parse a Kubernetes timestamp."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- runs (Jobs) ------------------------------------------------------------------


def _jobcondition(job: Body, kind: str) -> dict[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def run_record(job: Body) -> RunRecord:
    """A Job as a run: name, times and, once it ended, the result."""
    status = job.get("status") or {}
    record: dict[str, Any] = {
        "name": job["metadata"]["name"],
        "start_time": status.get("startTime"),
    }
    complete = _jobcondition(job, "Complete")
    failed = _jobcondition(job, "Failed")
    if complete:
        record.update(
            result="Succeeded",
            completion_time=status.get("completionTime") or complete.get("lastTransitionTime"),
            reason=complete.get("reason") or "Completed",
        )
    elif failed:
        record.update(
            result="Failed",
            completion_time=failed.get("lastTransitionTime"),
            reason=failed.get("reason") or "Failed",
            message=failed.get("message") or None,
        )
    return RunRecord(**record)


def _latest_finished(runs: list[RunRecord], previous: RunRecord | None) -> RunRecord | None:
    finished = [run for run in runs if run.result is not None]
    if previous is not None and previous.result is not None:
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


def next_cron_time(cron: str, time_zone: str, now: datetime) -> datetime:
    """The next time a cron expression fires after ``now``, read in ``time_zone``."""
    local_now = now.astimezone(ZoneInfo(time_zone))
    moment: datetime = croniter(cron, local_now).get_next(datetime)
    return moment


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
    once_started: bool | None = None,
) -> BackgroundJobStatus:
    """The status a BackgroundJob should show for what was observed.

    ``desired_replicas`` is the replica count the worker should have (continuous and
    queue); ``due`` is when a once-run that has not started is due; ``queue_length``
    the backlog the scaler last read; ``once_started`` False means the once-run itself
    has not started, so a finished manual run does not end the BackgroundJob.
    """
    spec = bgj.spec
    previous = bgj.status
    generation = bgj.metadata.generation
    trigger = spec.trigger.kind
    runs = [run_record(job) for job in observed.runs]
    active = sorted(run.name for run in runs if run.result is None)
    last_run = _latest_finished(runs, previous.last_run)

    fields: dict[str, Any] = {
        "observed_generation": generation,
        "trigger": trigger,
        "queue_length": queue_length if trigger == "queue" else None,
        "run_now_handled": previous.run_now_handled,
        "last_run": last_run if trigger in ("schedule", "once") else None,
        "active_runs": active or None,
    }
    successes = [r.completion_time for r in runs if r.result == "Succeeded" and r.completion_time]
    if previous.last_successful_time:
        successes.append(previous.last_successful_time)
    fields["last_successful_time"] = max(successes) if successes else None

    workload = observed.workload
    if workload is not None:
        fields["workload"] = WorkloadRef(
            api_version=workload["apiVersion"],
            kind=workload["kind"],
            name=workload["metadata"]["name"],
        )

    extra: list[Condition] = []
    if trigger in ("continuous", "queue"):
        wanted = desired_replicas or 0
        wstatus = (workload or {}).get("status") or {}
        fields.update(
            replicas=_count(wstatus, "replicas"),
            ready_replicas=_count(wstatus, "readyReplicas"),
            desired_replicas=wanted,
        )
        health = (
            service_health(workload, wanted)
            if workload is not None
            else Health(False, "Creating", "the workload is being created")
        )
        if spec.suspend:
            state: State = "Suspended"
        elif trigger == "queue" and wanted == 0:
            state = "Idle"
        else:
            state = "Running"
    elif trigger == "schedule":
        schedule = spec.trigger.schedule
        assert schedule is not None
        fields.update(_run_pods(observed, active, spec.parallelism))
        cron_status = (workload or {}).get("status") or {}
        fields["last_schedule_time"] = cron_status.get("lastScheduleTime")
        if cron_status.get("lastSuccessfulTime"):
            fields["last_successful_time"] = max(
                filter(None, [fields["last_successful_time"], cron_status["lastSuccessfulTime"]])
            )
        if not spec.suspend and problem is None:
            fields["next_run_time"] = rfc3339(
                next_cron_time(schedule.cron, schedule.time_zone, now)
            )
        health = (
            Health(True, "Scheduled", f"CronJob {workload['metadata']['name']} is scheduled")
            if workload is not None
            else Health(False, "Creating", "the CronJob is being created")
        )
        state = "Suspended" if spec.suspend else ("Running" if active else "Scheduled")
    else:  # once
        fields.update(_run_pods(observed, active, spec.parallelism))
        if active:
            state = "Running"
            health = Health(True, "Running", f"run {active[0]} is running")
        elif last_run is not None and last_run.result is not None and once_started is not False:
            succeeded = last_run.result == "Succeeded"
            state = "Succeeded" if succeeded else "Failed"
            detail = f"run {last_run.name} {last_run.result.lower()}"
            if last_run.reason and not succeeded:
                detail += f": {last_run.reason}"
            health = Health(succeeded, "RunSucceeded" if succeeded else "RunFailed", detail)
            extra.append(
                condition(
                    "Complete" if succeeded else "Failed",
                    True,
                    last_run.reason or last_run.result,
                    detail,
                    generation,
                    now,
                )
            )
        elif spec.suspend:
            state = "Suspended"
            health = Health(True, "Suspended", "suspended: the run will not start")
        else:
            state = "Waiting"
            when = rfc3339(due) if due is not None else "now"
            health = Health(True, "Waiting", f"the run is due at {when}")
            fields["next_run_time"] = rfc3339(due) if due is not None else None

    if problem is not None:
        state = "Degraded"
        health = Health(False, problem.reason, problem.message)

    # A failed once-run is over: nothing progresses until the user acts.
    progressing = not health.ready and problem is None and health.reason != "RunFailed"
    conditions = [
        condition("Ready", health.ready, health.reason, health.message, generation, now),
        condition(
            "Progressing",
            progressing,
            health.reason if progressing else "Reconciled",
            health.message if progressing else "the cluster matches the spec",
            generation,
            now,
        ),
        condition(
            "Degraded",
            problem is not None,
            problem.reason if problem else "AsExpected",
            problem.message if problem else "",
            generation,
            now,
        ),
    ]
    if problem is not None and problem.stalled:
        conditions.append(
            condition("Stalled", True, problem.reason, problem.message, generation, now)
        )
    if health.reason == "RunFailed":
        conditions.append(
            condition("Stalled", True, health.reason, health.message, generation, now)
        )
    conditions.extend(extra)
    fields["conditions"] = keep_transition_times(conditions, previous.conditions)
    fields["state"] = state
    return BackgroundJobStatus(**fields)
