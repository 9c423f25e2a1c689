"""Spec in, manifests out: the native workloads a BackgroundJob becomes. Pure functions."""

from __future__ import annotations

from bgjob.api.models import BackgroundJob
from bgjob.workloads.pod import Manifest
from bgjob.workloads.runs import cronjob
from bgjob.workloads.services import service_workload


def workload(
    bgj: BackgroundJob, queue_replicas: int | None = None, hold_schedule: bool = False
) -> Manifest | None:
    """The long-lived child kept applied: Deployment, StatefulSet or CronJob.

    A once BackgroundJob has none; its Job is created when due and never re-applied.
    ``hold_schedule`` suspends the CronJob while one of our own runs is active.
    """
    kind = bgj.spec.trigger.kind
    if kind == "schedule":
        return cronjob(bgj, hold_schedule)
    if kind == "once":
        return None
    return service_workload(bgj, queue_replicas)
