"""desired_children: which children, in which order, and when a singleton must wait."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from specs import CONTINUOUS, ONCE, QUEUE, SCHEDULE, bgjob

from bgjob.plan import Delete, desired_children
from bgjob.status import Problem

UID = "0b7c3e2a-uid"
NOW = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
RABBIT_FROM_SECRET = {
    "queue": {"rabbitmq": {"urlFrom": {"secretKeyRef": {"name": "s", "key": "k"}}, "queue": "q"}}
}
REDIS_FROM_SECRET = {
    "queue": {"redis": {"urlFrom": {"secretKeyRef": {"name": "s", "key": "k"}}, "list": "q"}}
}


def child(
    kind: str,
    name: str = "worker",
    *,
    active: bool = True,
    deleting: bool = False,
    ours: bool = True,
) -> dict[str, Any]:
    api = {"Deployment": "apps/v1", "StatefulSet": "apps/v1"}.get(kind, "batch/v1")
    owner = {"kind": "BackgroundJob", "name": "worker", "uid": UID if ours else "other"}
    meta: dict[str, Any] = {
        "name": name,
        "ownerReferences": [{**owner, "controller": True}],
        "labels": {"bgjob.dev/run": "once"} if kind == "Job" else {},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-03-01T12:04:00Z"
    status: dict[str, Any] = {}
    if kind == "Job" and not active:
        status["conditions"] = [{"type": "Complete", "status": "True"}]
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": {}, "status": status}


@dataclass
class Case:
    id: str
    trigger: dict[str, Any]
    children: list[dict[str, Any]]
    singleton: bool = False
    status: dict[str, Any] = field(default_factory=dict)
    # expected
    workload: str | None = None
    retire: list[Delete] = field(default_factory=list)
    waiting: bool = False
    prune: list[Delete] = field(default_factory=list)
    start: list[str] = field(default_factory=list)


STARTED = {"onceRunStarted": "2026-03-01T12:00:01Z"}
# fmt: off
CASES = [
    Case("continuous, nothing yet", CONTINUOUS, [], workload="Deployment"),
    Case("continuous after schedule: the CronJob is pruned after the Deployment is applied",
         CONTINUOUS, [child("CronJob")], workload="Deployment",
         prune=[Delete("CronJob", "worker", "Background")]),
    Case("continuous after once: the running Job is pruned after the Deployment is applied",
         CONTINUOUS, [child("Job")], status=STARTED, workload="Deployment",
         prune=[Delete("Job", "worker", "Background")]),
    Case("singleton continuous after once: the running Job goes first, in the foreground",
         CONTINUOUS, [child("Job")], singleton=True, status=STARTED, workload="StatefulSet",
         retire=[Delete("Job", "worker", "Foreground")], waiting=True),
    Case("singleton continuous after once, the Job still terminating: wait, delete nothing new",
         CONTINUOUS, [child("Job", deleting=True)], singleton=True, status=STARTED,
         workload="StatefulSet", waiting=True),
    Case("singleton continuous after once, the Job finished: no wait, pruned", CONTINUOUS,
         [child("Job", active=False)], singleton=True, status=STARTED, workload="StatefulSet",
         prune=[Delete("Job", "worker", "Background")]),
    Case("singleton once after continuous: the StatefulSet goes first, no Job yet", ONCE,
         [child("StatefulSet")], singleton=True,
         retire=[Delete("StatefulSet", "worker", "Foreground")], waiting=True),
    Case("singleton once after continuous, its pods gone: the run starts", ONCE, [],
         singleton=True, start=["worker"]),
    Case("singleton schedule after a Deployment: the Deployment goes first", SCHEDULE,
         [child("Deployment")], singleton=True, workload="CronJob",
         retire=[Delete("Deployment", "worker", "Foreground")], waiting=True),
    Case("singleton queue after schedule: the CronJob (and its runs) go first", QUEUE,
         [child("CronJob")], singleton=True, workload="StatefulSet",
         retire=[Delete("CronJob", "worker", "Foreground")], waiting=True),
    Case("singleton to non-singleton: the new Deployment first, the StatefulSet after", CONTINUOUS,
         [child("StatefulSet")], workload="Deployment",
         prune=[Delete("StatefulSet", "worker", "Background")]),
    Case("once keeps its runs", ONCE, [child("Job", name="worker-m1", active=False)],
         status=STARTED),
    Case("a stranger's object is never pruned", CONTINUOUS, [child("CronJob", ours=False)],
         workload="Deployment"),
]
# fmt: on


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_desired_children(case: Case) -> None:
    bgj = bgjob(trigger=case.trigger, singleton=case.singleton, status=case.status)
    children = {(c["kind"], c["metadata"]["name"]): c for c in case.children}

    plan = desired_children(bgj, children, NOW)

    assert (plan.workload or {}).get("kind") == case.workload
    assert plan.retire == case.retire
    assert (plan.waiting is not None) is case.waiting
    assert plan.prune == case.prune
    assert [j["metadata"]["name"] for j in plan.runs.start] == case.start
    if case.waiting:
        assert plan.wake_after == 2.0
        assert plan.runs.start == [] and plan.runs.delete == []


def test_a_waiting_singleton_leaves_the_run_now_request_for_the_next_pass() -> None:
    bgj = bgjob(trigger=SCHEDULE, singleton=True, annotations={"bgjob.dev/run-now": "go"})
    plan = desired_children(bgj, {("Deployment", "worker"): child("Deployment")}, NOW)
    assert plan.waiting is not None
    assert plan.runs.run_now_handled is None
    assert plan.events == []


def test_a_workload_still_being_deleted_is_retried() -> None:
    bgj = bgjob(trigger=CONTINUOUS)
    plan = desired_children(
        bgj, {("Deployment", "worker"): child("Deployment", deleting=True)}, NOW
    )
    assert plan.retry == "Deployment worker is still being deleted"


def test_a_problem_found_before_planning_plans_nothing() -> None:
    problem = Problem("InvalidTimeZone", "spec.trigger.schedule.timeZone: ...")
    plan = desired_children(bgjob(trigger=SCHEDULE), {}, NOW, problem=problem)
    assert plan.problem == problem
    assert plan.workload is None and plan.runs.start == [] and plan.prune == []


def test_keda_mode_plans_the_scaled_object_and_a_worker_without_replicas() -> None:
    plan = desired_children(bgjob(trigger=RABBIT_FROM_SECRET), {}, NOW, "keda")
    assert plan.workload is not None and "replicas" not in plan.workload["spec"]
    kinds = [c["kind"] for c in plan.autoscaling]
    assert kinds == ["TriggerAuthentication", "ScaledObject"]


def test_keda_mode_that_cannot_express_the_trigger_is_a_problem() -> None:
    plan = desired_children(bgjob(trigger=REDIS_FROM_SECRET), {}, NOW, "keda")
    assert plan.problem is not None and plan.problem.reason == "KEDAUnsupported"
    assert plan.workload is None


def test_a_schedule_is_held_while_a_manual_run_is_active() -> None:
    manual = child("Job", name="worker-m1")
    manual["metadata"]["labels"] = {"bgjob.dev/run": "manual"}
    plan = desired_children(bgjob(trigger=SCHEDULE), {("Job", "worker-m1"): manual}, NOW)
    assert plan.workload is not None and plan.workload["spec"]["suspend"] is True
    # The hold is the operator's, not the user's: the status does not say Suspended.
    free = desired_children(bgjob(trigger=SCHEDULE), {}, NOW)
    assert free.workload is not None and free.workload["spec"]["suspend"] is False
