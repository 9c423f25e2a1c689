"""Runs to completion (schedule and once triggers): CronJob and Job manifests."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from bgjob.api.models import BackgroundJob
from bgjob.api.names import RUN_KIND_LABEL, RunKind
from bgjob.workloads.pod import (
    Manifest,
    labels,
    metadata,
    pod_template,
    with_spec_hash,
)

# Job names are label values: 63 characters at most.
MAX_JOB_NAME = 63


def job_spec(bgj: BackgroundJob) -> dict[str, Any]:
    """The Job spec of one run: ``parallelism`` pods, each run to completion.

    With more than one pod the Job is Indexed, so each pod knows its shard from
    JOB_COMPLETION_INDEX.
    """
    spec = bgj.spec
    pods = spec.parallelism
    job: dict[str, Any] = {
        "parallelism": pods,
        "completions": pods,
        "backoffLimit": spec.run.backoff_limit,
        "template": pod_template(bgj, restart_policy="Never"),
    }
    if pods > 1:
        job["completionMode"] = "Indexed"
    if spec.run.active_deadline_seconds is not None:
        job["activeDeadlineSeconds"] = spec.run.active_deadline_seconds
    if spec.run.ttl_seconds_after_finished is not None:
        job["ttlSecondsAfterFinished"] = spec.run.ttl_seconds_after_finished
    return job


def cronjob(bgj: BackgroundJob, hold: bool = False) -> Manifest:
    """The CronJob of a schedule BackgroundJob.

    ``hold`` suspends it while a run it cannot see (a manual run) must not get
    company: the missed schedule then runs when the hold ends, as under Forbid.
    """
    spec = bgj.spec
    schedule = spec.trigger.schedule
    assert schedule is not None
    cron: dict[str, Any] = {
        "schedule": schedule.cron.strip(),
        "timeZone": schedule.time_zone,
        "concurrencyPolicy": spec.effective_overlap,
        "suspend": spec.suspend or hold,
        "successfulJobsHistoryLimit": spec.history.successful_runs,
        "failedJobsHistoryLimit": spec.history.failed_runs,
        "jobTemplate": {
            "metadata": {"labels": {**labels(bgj), RUN_KIND_LABEL: "scheduled"}},
            "spec": job_spec(bgj),
        },
    }
    if schedule.starting_deadline_seconds is not None:
        cron["startingDeadlineSeconds"] = schedule.starting_deadline_seconds
    return with_spec_hash(
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata(bgj), "spec": cron}
    )


def run_job(bgj: BackgroundJob, name: str, run_kind: RunKind) -> Manifest:
    """A Job for one run: the once run, or a manual run started by the run-now annotation."""
    meta = metadata(bgj, name)
    meta["labels"][RUN_KIND_LABEL] = run_kind
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec(bgj)}


def manual_run_name(bgj: BackgroundJob, request: str) -> str:
    """A stable Job name for one value of the run-now annotation."""
    digest = hashlib.sha256(request.encode()).hexdigest()[:8]
    suffix = f"-m{digest}"
    return bgj.metadata.name[: MAX_JOB_NAME - len(suffix)] + suffix


def once_due_time(bgj: BackgroundJob, created: datetime) -> datetime:
    """When a once BackgroundJob should run: ``at``, creation + ``delaySeconds``, or now."""
    once = bgj.spec.trigger.once
    assert once is not None
    if once.at is not None:
        return once.at
    return created + timedelta(seconds=once.delay_seconds or 0)
