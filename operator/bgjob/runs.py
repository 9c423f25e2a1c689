"""Runs to completion, decided the way the CronJob controller decides: pure, clock injected.

``plan_runs(bgj, jobs, now)`` looks at the Jobs of one BackgroundJob (its own
once and manual runs, and the scheduled runs its CronJob started) and says
which runs to start, which to delete, whether the CronJob must hold its next
run back, and when to look again. The reconciler carries it out.

The rules, each with a table test in ``tests/unit/test_runs.py``:

- The once-run starts when due (``at``, creation + ``delaySeconds``, or at once
  when neither is given, whatever the clocks say) and never twice: its Job
  carries the BackgroundJob's uid and generation, and ``status.onceRunStarted``
  is written before the Job is created.
- ``bgjob.dev/run-now`` starts one run per new value. It sees every active run
  of the BackgroundJob, manual or scheduled: Forbid (and singleton) skips it,
  Replace deletes the active runs first, Allow starts it next to them.
- For a schedule under Forbid or Replace that decision does not rest on the cache
  alone: a request within seconds of a tick waits until the CronJob has recorded
  it (``tick_in_flight``), and the plan asks the reconciler to hold the CronJob and
  read the runs live before the manual run starts (``confirm_runs``).
- The once-run's record (``status.onceRunStarted``, ``lastRun``) is kept whatever
  the trigger becomes: changed to another and back, it does not run again.
- The CronJob's Forbid only sees the Jobs the CronJob created. While a run of
  ours (once or manual) is active under Forbid, the CronJob is suspended, so the
  scheduled run waits, as Forbid makes it wait for one of its own; under Replace
  a newer scheduled run replaces ours.
- Finished manual runs are trimmed to ``history``, like the CronJob's own.

Why a run failed is not in its Job, only in its pods: ``run_failure(pods)`` says
how the most recent failed pod ended (exit code, OOMKilled, signal, a failed
init container, an eviction) and ``failure_reason``/``failure_message`` word it
for ``status.lastRun`` and the RunFailed Event. The reconciler lists those pods
once, when the plan asks for them (``bgjob.status.unrecorded_failure``).
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from bgjob.api.models import BackgroundJob, Overlap
from bgjob.api.names import (
    CONTAINER_NAME,
    ONCE_RUN_ANNOTATION,
    RUN_KIND_LABEL,
    RUN_NOW_ANNOTATION,
    Body,
    Event,
)
from bgjob.api.times import parse_time, rfc3339
from bgjob.workloads.pod import controlled_by, selector_labels
from bgjob.workloads.runs import manual_run_name, once_due_time, run_job

# --- one Job ---------------------------------------------------------------------------


def finished_condition(job: Body) -> dict[str, Any] | None:
    """The Job's Complete or Failed condition once it has ended; None while it runs."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return dict(condition)
    return None


def is_finished(job: Body) -> bool:
    """Whether a Job has ended, successfully or not."""
    return finished_condition(job) is not None


def is_run_of(child: Body, bgj: BackgroundJob) -> bool:
    """A Job this BackgroundJob started, directly or through its CronJob."""
    if child["kind"] != "Job":
        return False
    if controlled_by(child, bgj.metadata.uid):
        return True
    return any(
        ref.get("kind") == "CronJob" and ref.get("name") == bgj.metadata.name
        for ref in child["metadata"].get("ownerReferences") or []
    )


def run_kind(job: Body) -> str | None:
    """once, manual or scheduled, from the label the Job carries."""
    labels: dict[str, str] = job["metadata"].get("labels") or {}
    return labels.get(RUN_KIND_LABEL)


def _deleting(job: Body) -> bool:
    return bool(job["metadata"].get("deletionTimestamp"))


def _name(job: Body) -> str:
    name: str = job["metadata"]["name"]
    return name


# --- the once-run ----------------------------------------------------------------------


def once_identity(bgj: BackgroundJob) -> str:
    """Which BackgroundJob, and which of its specs, a once-run was started for."""
    return f"{bgj.metadata.uid}/{bgj.metadata.generation}"


def once_run_job(bgj: BackgroundJob) -> Body:
    """The once-run's Job, stamped with its identity."""
    job = run_job(bgj, bgj.metadata.name, "once")
    job["metadata"]["annotations"] = {ONCE_RUN_ANNOTATION: once_identity(bgj)}
    return job


def once_due(bgj: BackgroundJob, now: datetime) -> datetime:
    """When the once-run is due, as an aware UTC time (creation time, or now, when unknown)."""
    created = parse_time(bgj.metadata.creation_timestamp) or now
    due = once_due_time(bgj, created)
    return due if due.tzinfo else due.replace(tzinfo=UTC)


def once_run_of(job: Body) -> str | None:
    """The uid of the BackgroundJob a Job says it is the once-run of (its
    ``bgjob.dev/once-run: <uid>/<generation>`` annotation); None for any other Job."""
    annotations: dict[str, str] = job["metadata"].get("annotations") or {}
    identity = annotations.get(ONCE_RUN_ANNOTATION)
    if not identity:
        return None
    return identity.split("/", 1)[0] or None


def is_once_run(job: Body, bgj: BackgroundJob) -> bool:
    """This BackgroundJob's once-run: a Job it controls that carries its uid in the
    once-run annotation, or its name (a Job from before the annotation). When in
    doubt it counts: at most once."""
    if not controlled_by(job, bgj.metadata.uid):
        return False
    return once_run_of(job) == bgj.metadata.uid or _name(job) == bgj.metadata.name


def once_started(bgj: BackgroundJob, jobs: Sequence[Body]) -> bool:
    """Whether the once-run (not a manual run) was started: it never starts twice.

    ``status.onceRunStarted`` is written before the Job is created and kept
    whatever the trigger becomes, so a restart, or a trigger changed to another
    and back to once, that finds neither the Job (deleted after
    ``ttlSecondsAfterFinished``, or with the old workload) nor its result still
    knows it ran.
    """
    name = bgj.metadata.name
    last_run = bgj.status.last_run
    return (
        bgj.status.once_run_started is not None
        or any(is_once_run(job, bgj) for job in jobs)
        or (last_run is not None and last_run.name == name)
        or name in (bgj.status.active_runs or [])
    )


def once_run_lost(bgj: BackgroundJob, jobs: Sequence[Body]) -> bool:
    """Started, yet neither its Job nor any run's result is left to tell how it went."""
    return (
        bgj.status.once_run_started is not None
        and bgj.status.last_run is None
        and not any(is_once_run(job, bgj) for job in jobs)
    )


def _once_is_due(bgj: BackgroundJob, now: datetime) -> tuple[bool, float]:
    """Due now?, and if not, in how many seconds."""
    once = bgj.spec.trigger.once
    assert once is not None
    if once.at is None and not once.delay_seconds:
        return True, 0.0  # As soon as possible: a clock behind the API server's must not delay it.
    wait = (once_due(bgj, now) - now).total_seconds()
    return wait <= 0, max(wait, 0.0)


# --- the plan --------------------------------------------------------------------------


@dataclass
class Runs:
    """What to do about runs in one pass, and what to record in status."""

    start: list[Body] = field(default_factory=list)
    # Job names to delete (Replace, history), in the background.
    delete: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    wake_after: float | None = None
    # Suspend the CronJob: a run of ours is active and the policy is Forbid.
    hold_schedule: bool = False
    run_now_handled: str | None = None
    # Set before the once-run's Job is created (see ``once_started``).
    once_run_started: str | None = None
    # Read the runs live before starting the manual run: a Job the CronJob created a
    # moment ago may not be in the cache yet (see ``confirm_runs``).
    confirm: bool = False

    @classmethod
    def recorded(cls, bgj: BackgroundJob) -> Runs:
        """Nothing to do; what status recorded is kept (whatever the trigger is now)."""
        return cls(
            run_now_handled=bgj.status.run_now_handled,
            once_run_started=bgj.status.once_run_started,
        )

    def wake(self, seconds: float) -> None:
        """Look again in ``seconds`` at the latest."""
        self.wake_after = sooner(self.wake_after, seconds)


def sooner(wake_after: float | None, seconds: float) -> float:
    """The earlier of a wake-up already set (if any) and ``seconds``, never below 0."""
    if wake_after is None or seconds < wake_after:
        return max(seconds, 0.0)
    return wake_after


def run_now_policy(bgj: BackgroundJob) -> Overlap:
    """How a manual run treats active runs: the schedule's overlap, or for once,
    Forbid for a singleton and Allow otherwise."""
    if bgj.spec.trigger.kind == "schedule":
        return bgj.spec.effective_overlap
    return "Forbid" if bgj.spec.singleton else "Allow"


def plan_runs(
    bgj: BackgroundJob, jobs: Sequence[Body], now: datetime, cronjob: Body | None = None
) -> Runs:
    """Runs to start and delete for ``bgj``, given every Job that is one of its runs
    (and, for a schedule, its CronJob as cached)."""
    runs = Runs.recorded(bgj)
    kind = bgj.spec.trigger.kind
    # Deleting Jobs count as active until they are gone: their pods may still run.
    active = [job for job in jobs if not is_finished(job)]
    if kind == "once":
        _plan_once(bgj, jobs, active, now, runs)
    _plan_run_now(bgj, jobs, active, runs, now, cronjob)
    if kind in ("schedule", "once"):
        _trim_manual_history(bgj, jobs, runs)
    if kind == "schedule":
        _plan_schedule(bgj, active, now, runs)
    return runs


def _plan_once(
    bgj: BackgroundJob, jobs: Sequence[Body], active: list[Body], now: datetime, runs: Runs
) -> None:
    if once_started(bgj, jobs) or bgj.spec.suspend:
        return
    due, wait = _once_is_due(bgj, now)
    if not due:
        runs.wake(wait)
        return
    if active and bgj.spec.singleton:
        return  # A manual run is on: the once-run follows when that Job ends (its watch event).
    runs.start.append(once_run_job(bgj))
    active.append(runs.start[-1])
    runs.once_run_started = rfc3339(now)


def _plan_run_now(
    bgj: BackgroundJob,
    jobs: Sequence[Body],
    active: list[Body],
    runs: Runs,
    now: datetime,
    cronjob: Body | None,
) -> None:
    request = bgj.metadata.annotations.get(RUN_NOW_ANNOTATION)
    if not request or request == bgj.status.run_now_handled:
        return
    kind = bgj.spec.trigger.kind
    name = manual_run_name(bgj, request)
    policy = run_now_policy(bgj)
    guarded = kind == "schedule" and policy != "Allow"
    if guarded and not any(_name(job) == name for job in jobs):
        wait = tick_in_flight(bgj, cronjob, now)
        if wait is not None:
            runs.wake(wait)  # Decided once the CronJob has recorded its tick.
            return
    runs.run_now_handled = request
    if kind not in ("schedule", "once"):
        runs.events.append(
            Event(
                "Warning",
                "RunNowIgnored",
                f"{RUN_NOW_ANNOTATION} applies to schedule and once triggers, not {kind}",
            )
        )
        return
    if any(_name(job) == name for job in jobs):
        return  # This request's run exists: our status write is still on its way.
    if active and policy == "Forbid":
        names = ", ".join(sorted(_name(job) for job in active))
        runs.events.append(
            Event("Warning", "RunNowSkipped", f"not started: run {names} is still active")
        )
        return
    if active and policy == "Replace":
        runs.delete.extend(_name(job) for job in active if not _deleting(job))
        active.clear()
    runs.start.append(run_job(bgj, name, "manual"))
    active.append(runs.start[-1])
    # The CronJob is held (suspended) before the manual run starts; what it started
    # before that may not be cached yet: the reconciler reads the runs live first.
    runs.confirm = guarded


# A cron tick at most this old that the CronJob has not recorded yet
# (status.lastScheduleTime) may have a Job on its way: a manual run under Forbid or
# Replace waits until it is recorded, or this long after the tick.
TICK_SETTLE_SECONDS = 10.0
# A tick this close ahead may come before the CronJob controller sees the hold
# (suspend) we apply: the manual run is decided after that tick instead.
TICK_AHEAD_SECONDS = 5.0


def tick_in_flight(bgj: BackgroundJob, cronjob: Body | None, now: datetime) -> float | None:
    """Seconds to wait before deciding a manual run: the schedule ticks so soon, or
    ticked so recently, that the CronJob may be creating its Job; None when no tick
    is in flight."""
    schedule = bgj.spec.trigger.schedule
    if schedule is None or bgj.spec.suspend:
        return None  # A suspended CronJob starts nothing.
    ahead = (next_cron_time(schedule.cron, schedule.time_zone, now) - now).total_seconds()
    if ahead <= TICK_AHEAD_SECONDS:
        return ahead + 1.0
    tick = previous_cron_time(schedule.cron, schedule.time_zone, now)
    age = (now - tick).total_seconds()
    if age >= TICK_SETTLE_SECONDS:
        return None
    recorded = parse_time(((cronjob or {}).get("status") or {}).get("lastScheduleTime"))
    if recorded is not None and recorded >= tick:
        return None  # Its Job, if any, was created before the CronJob recorded the tick.
    return max(TICK_SETTLE_SECONDS - age, 0.5)


def confirm_runs(
    bgj: BackgroundJob,
    cached: Sequence[Body],
    live: Sequence[Body],
    now: datetime,
    cronjob: Body | None = None,
) -> Runs:
    """The runs decided again with the Jobs read live (after the CronJob was held), so
    that a scheduled run the cache has not seen yet is seen: a manual run under Forbid
    is skipped next to it, under Replace it is deleted first. ``live`` may hold any
    Jobs; only this BackgroundJob's runs count, a live copy over a cached one."""
    jobs = {_name(job): job for job in cached}
    jobs.update({_name(job): job for job in live if is_run_of(job, bgj)})
    runs = plan_runs(bgj, list(jobs.values()), now, cronjob)
    if runs.confirm:
        runs.confirm = False  # Read once: nothing newer can be known in this pass.
    elif runs.hold_schedule is False and bgj.spec.trigger.kind == "schedule":
        runs.wake(1.0)  # The CronJob was held for a run that did not start: release it.
    return runs


def _plan_schedule(bgj: BackgroundJob, active: list[Body], now: datetime, runs: Runs) -> None:
    ours = [job for job in active if run_kind(job) != "scheduled"]
    policy = bgj.spec.effective_overlap
    runs.hold_schedule = policy == "Forbid" and bool(ours)
    if policy == "Replace":
        scheduled = [job for job in active if run_kind(job) == "scheduled"]
        newest = max((_created(job) for job in scheduled), default=None)
        for job in ours:
            if newest is not None and _created(job) < newest and not _deleting(job):
                runs.delete.append(_name(job))
    if not bgj.spec.suspend:
        schedule = bgj.spec.trigger.schedule
        assert schedule is not None
        # Refresh nextRunTime after the tick even if the CronJob skips the run.
        due = next_cron_time(schedule.cron, schedule.time_zone, now)
        runs.wake((due - now).total_seconds() + 1.0)


def _created(job: Body) -> datetime:
    # A Job we start in this pass has no creationTimestamp yet: it is the newest.
    return parse_time(job["metadata"].get("creationTimestamp")) or datetime.max.replace(tzinfo=UTC)


def _trim_manual_history(bgj: BackgroundJob, jobs: Sequence[Body], runs: Runs) -> None:
    """Keep as many finished manual runs as ``history`` says, like the CronJob does."""
    history = bgj.spec.history
    finished = [
        (finished_condition(job), job)
        for job in jobs
        if run_kind(job) == "manual" and not _deleting(job)
    ]
    ended = sorted(
        ((cond, job) for cond, job in finished if cond is not None),
        key=lambda item: (_completion_time(*item), _name(item[1])),
        reverse=True,
    )
    kept = {"Complete": history.successful_runs, "Failed": history.failed_runs}
    for cond, job in ended:
        if kept[cond["type"]] > 0:
            kept[cond["type"]] -= 1
        elif _name(job) not in runs.delete:
            runs.delete.append(_name(job))


def _completion_time(cond: dict[str, Any], job: Body) -> str:
    time: str = (
        (job.get("status") or {}).get("completionTime") or cond.get("lastTransitionTime") or ""
    )
    return time


# (cron, time zone) -> (from, next): the next firing computed from ``from``. It is the
# answer for every moment in [from, next): no firing lies between. Thousands of
# BackgroundJobs share a few schedules; parsing one costs more than a reconcile's rest.
_NEXT_FIRING: dict[tuple[str, str], tuple[datetime, datetime]] = {}
_NEXT_FIRING_MAX = 4096


def next_cron_time(cron: str, time_zone: str, now: datetime) -> datetime:
    """The next time a cron expression fires after ``now``, read in ``time_zone``."""
    known = _NEXT_FIRING.get((cron, time_zone))
    if known is not None and now.tzinfo is not None and known[0] <= now < known[1]:
        return known[1]
    local_now = now.astimezone(ZoneInfo(time_zone))
    moment: datetime = croniter(cron, local_now).get_next(datetime)
    if now.tzinfo is not None:
        if len(_NEXT_FIRING) >= _NEXT_FIRING_MAX:
            _NEXT_FIRING.clear()
        _NEXT_FIRING[(cron, time_zone)] = (now, moment)
    return moment


def previous_cron_time(cron: str, time_zone: str, now: datetime) -> datetime:
    """The last time a cron expression fired at or before ``now``, read in ``time_zone``."""
    local_now = now.astimezone(ZoneInfo(time_zone))
    moment: datetime = croniter(cron, local_now + timedelta(microseconds=1)).get_prev(datetime)
    return moment


# --- why a run failed: its pods --------------------------------------------------------

# The Job controller labels every pod of a Job with the Job's name (Kubernetes >= 1.27).
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# The Job's reason when its pods' failures ended it: their story is the better one.
POD_FAILURE_REASONS = frozenset({"BackoffLimitExceeded", "Failed"})
# Container reasons that say no more than "it failed".
PLAIN_REASONS = frozenset({"", "Error", "Completed"})
MAX_POD_MESSAGE = 200


def run_selector(bgj: BackgroundJob) -> str:
    """The label selector of a BackgroundJob's Jobs, its CronJob's included."""
    return ",".join(f"{key}={value}" for key, value in selector_labels(bgj).items())


def run_pods_selector(job_name: str) -> str:
    """The label selector of a run's pods."""
    return f"{JOB_NAME_LABEL}={job_name}"


@dataclass(frozen=True)
class RunFailure:
    """How the most recent failed pod of a run ended."""

    pod: str
    # The container that failed: the worker, else a failed init container or another one.
    container: str | None = None
    init: bool = False
    exit_code: int | None = None
    reason: str | None = None  # the container's: Error, OOMKilled, StartError...
    signal: int | None = None
    # The pod's own, when the kubelet ended it (Evicted, DeadlineExceeded, Shutdown).
    pod_reason: str | None = None
    pod_message: str | None = None


def _terminated(state: dict[str, Any] | None) -> dict[str, Any] | None:
    terminated = (state or {}).get("terminated")
    return {
        key: terminated[key]
        for key in ("exitCode", "reason", "signal", "finishedAt")
        if isinstance(terminated, dict) and terminated.get(key) is not None
    } or None


def trim_pod(pod: Body) -> Body:
    """What ``run_failure`` reads of a pod, nothing more: names, phase, terminations."""
    status = pod.get("status") or {}

    def containers(key: str) -> list[dict[str, Any]]:
        return [
            {
                "name": c.get("name"),
                "state": {"terminated": _terminated(c.get("state"))},
                "lastState": {"terminated": _terminated(c.get("lastState"))},
            }
            for c in status.get(key) or []
        ]

    meta = pod.get("metadata") or {}
    return {
        "metadata": {"name": meta.get("name"), "creationTimestamp": meta.get("creationTimestamp")},
        "spec": {
            "initContainers": [
                {"name": c.get("name"), "restartPolicy": c.get("restartPolicy")}
                for c in (pod.get("spec") or {}).get("initContainers") or []
            ]
        },
        "status": {
            "phase": status.get("phase"),
            "reason": status.get("reason"),
            "message": status.get("message"),
            "containerStatuses": containers("containerStatuses"),
            "initContainerStatuses": containers("initContainerStatuses"),
        },
    }


def _last_failure(container_status: dict[str, Any]) -> dict[str, Any] | None:
    """A container's last termination, if it was a failure (a non-zero exit)."""
    for key in ("state", "lastState"):
        terminated = (container_status.get(key) or {}).get("terminated")
        if terminated and terminated.get("exitCode"):
            found: dict[str, Any] = terminated
            return found
    return None


def _pod_failure(pod: Body) -> tuple[str, RunFailure]:
    """When a failed pod ended, and how: the worker first, then what kept it from running."""
    status = pod.get("status") or {}
    sidecars = {
        c.get("name")
        for c in (pod.get("spec") or {}).get("initContainers") or []
        if c.get("restartPolicy") == "Always"
    }
    statuses = status.get("containerStatuses") or []
    inits = [c for c in status.get("initContainerStatuses") or [] if c.get("name") not in sidecars]
    candidates = [
        *((c, False) for c in statuses if c.get("name") == CONTAINER_NAME),
        *((c, True) for c in inits),  # A failed init container: the worker never ran.
        *((c, False) for c in statuses if c.get("name") != CONTAINER_NAME),
        *((c, True) for c in status.get("initContainerStatuses") or [] if c not in inits),
    ]
    name: str = (pod.get("metadata") or {}).get("name") or ""
    created: str = (pod.get("metadata") or {}).get("creationTimestamp") or ""
    pod_reason = status.get("reason") or None
    pod_message = (status.get("message") or "").strip()[:MAX_POD_MESSAGE] or None
    for container, init in candidates:
        terminated = _last_failure(container)
        if terminated is not None:
            failure = RunFailure(
                pod=name,
                container=container.get("name"),
                init=init,
                exit_code=int(terminated["exitCode"]),
                reason=terminated.get("reason") or None,
                signal=int(terminated["signal"]) if terminated.get("signal") else None,
                pod_reason=pod_reason,
                pod_message=pod_message,
            )
            return max(terminated.get("finishedAt") or "", created), failure
    return created, RunFailure(pod=name, pod_reason=pod_reason, pod_message=pod_message)


def run_failure(pods: Sequence[Body]) -> RunFailure | None:
    """How the most recent failed pod of a run ended; None when no failed pod is left
    (removed with the Job by ``ttlSecondsAfterFinished``, or never started)."""
    failed = [_pod_failure(p) for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
    if not failed:
        return None
    return max(failed, key=lambda item: (item[0], item[1].pod))[1]


def _signal_name(number: int) -> str | None:
    try:
        return signal.Signals(number).name
    except ValueError:
        return None


def describe_failure(failure: RunFailure) -> str | None:
    """One line on how the run's pod ended, e.g. 'container worker exited with code 42 (Error)'."""
    parts = []
    if failure.pod_reason:
        detail = f": {failure.pod_message}" if failure.pod_message else ""
        parts.append(f"pod was {failure.pod_reason}{detail}")
    if failure.container is not None and failure.exit_code is not None:
        who = f"{'init container' if failure.init else 'container'} {failure.container}"
        code = failure.exit_code
        killer = _signal_name(failure.signal) if failure.signal else None
        if failure.reason == "OOMKilled":
            parts.append(f"{who} was OOMKilled (exit code {code})")
        elif failure.signal:
            parts.append(
                f"{who} was killed by {killer or 'signal'} (signal {failure.signal}, "
                f"exit code {code})"
            )
        else:
            # 128+n is how a runtime reports a process that signal n ended.
            by = _signal_name(code - 128) if 128 < code <= 128 + 64 else None
            notes = ", ".join(filter(None, [failure.reason, f"128+{by}" if by else None]))
            parts.append(f"{who} exited with code {code}" + (f" ({notes})" if notes else ""))
    return "; ".join(parts) or None


def failure_reason(job_reason: str | None, failure: RunFailure | None) -> str:
    """The run's reason: the Job's, or the pod's more specific one (OOMKilled, Evicted)
    when the pods' failures are what ended the Job."""
    reason = job_reason or "Failed"
    if failure is None or reason not in POD_FAILURE_REASONS:
        return reason
    if failure.reason and failure.reason not in PLAIN_REASONS:
        return failure.reason
    return failure.pod_reason or reason


def failure_message(
    job_reason: str | None, job_message: str | None, failure: RunFailure | None
) -> str | None:
    """The run's message: how its pod ended, after the Job's own message when the Job
    ended for a reason of its own (DeadlineExceeded, a pod failure policy)."""
    told = describe_failure(failure) if failure is not None else None
    if told is None:
        return job_message or None
    if (job_reason or "Failed") in POD_FAILURE_REASONS or not job_message:
        return told
    return f"{job_message}; {told}"
