"""Whole reconcile passes against an in-memory API server: the overlaps users would see.

Each test replays one moment of a BackgroundJob's life (a trigger change, a
manual run next to a schedule, a suspended queue) and checks the calls the
operator makes, in order.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from specs import CONTINUOUS, ONCE, SCHEDULE, body, queue
from test_keda_objects import FakeScaler

from bgjob.api.models import parse
from bgjob.api.names import MANAGER
from bgjob.kube import ApiError, Kube
from bgjob.reconcile import Reconciler
from bgjob.scaling.network import NetworkPolicy
from bgjob.scaling.probes import Work
from bgjob.scaling.scaler import Scaler, View
from bgjob.store import Store

NS, NAME, UID = "shop", "worker", "0b7c3e2a-uid"
KEY = (NS, NAME)
NOW = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
API = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "CronJob": "batch/v1", "Job": "batch/v1"}


class FakeKube:
    """Records every call; apply and create answer with the object, delete forgets it."""

    def __init__(
        self,
        pods: list[dict[str, Any]] | ApiError | None = None,
        jobs: list[dict[str, Any]] | None = None,
    ) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.statuses: list[dict[str, Any]] = []
        self.messages: list[str] = []
        self.pods = pods or []
        self.jobs = jobs or []  # what a live LIST of Jobs finds

    def list(
        self, kind: str, label_selector: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        self.calls.append(("list", kind, label_selector, namespace))
        if kind == "Job":  # as the API server lists them: items without kind or apiVersion
            return [
                {k: v for k, v in job.items() if k not in ("kind", "apiVersion")}
                for job in copy.deepcopy(self.jobs)
            ]
        if isinstance(self.pods, ApiError):
            raise self.pods
        return copy.deepcopy(self.pods)

    def apply(
        self, manifest: dict[str, Any], manager: str = MANAGER, *, create_only: bool = False
    ) -> dict[str, Any]:
        self.calls.append(("apply", manifest["kind"], manifest["metadata"]["name"]))
        return copy.deepcopy(manifest)

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", manifest["kind"], manifest["metadata"]["name"]))
        return copy.deepcopy(manifest)

    def delete(self, kind: str, namespace: str, name: str, propagation: str) -> None:
        self.calls.append(("delete", kind, name, propagation))

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("status",))
        self.statuses.append(status)
        return {"metadata": {"name": name, "namespace": namespace}, "status": status}

    def event(self, involved: dict[str, Any], kind: str, reason: str, message: str) -> None:
        self.calls.append(("event", reason))
        self.messages.append(message)


def owned(kind: str, name: str = NAME, run: str | None = None, **status: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": NS,
        "resourceVersion": "10",
        "labels": {"app.kubernetes.io/instance": NAME, "app.kubernetes.io/managed-by": MANAGER},
        "ownerReferences": [
            {"kind": "BackgroundJob", "name": NAME, "uid": UID, "controller": True}
        ],
    }
    if run:
        meta["labels"]["bgjob.dev/run"] = run
    return {"apiVersion": API[kind], "kind": kind, "metadata": meta, "spec": {}, "status": status}


def reconcile(
    bgj: dict[str, Any], *children: dict[str, Any], scaler: FakeScaler | None = None
) -> FakeKube:
    kube, store = FakeKube(), Store()
    store.put_bgjob(bgj)
    for child in children:
        store.put_child(child, child["kind"], child["apiVersion"])
    reconciler = Reconciler(
        cast(Kube, kube), store, clock=lambda: NOW, scaler=cast(Scaler | None, scaler)
    )
    reconciler.reconcile(KEY)
    return kube


def writes(kube: FakeKube) -> list[tuple[Any, ...]]:
    return [call for call in kube.calls if call[0] in ("apply", "create", "delete")]


def test_singleton_once_to_continuous_stops_the_run_before_the_statefulset_starts() -> None:
    bgj = body(NAME, trigger=CONTINUOUS, singleton=True, status={"onceRunStarted": "x"})
    kube = reconcile(bgj, owned("Job", run="once"))
    assert writes(kube) == [("delete", "Job", NAME, "Foreground")]
    progressing = next(c for c in kube.statuses[-1]["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "WaitingForOldPods")
    assert "Job worker" in progressing["message"]


def test_singleton_continuous_to_once_stops_the_statefulset_before_the_run_starts() -> None:
    kube = reconcile(body(NAME, trigger=ONCE, singleton=True), owned("StatefulSet"))
    assert writes(kube) == [("delete", "StatefulSet", NAME, "Foreground")]


def test_singleton_once_starts_once_the_old_statefulset_is_gone() -> None:
    kube = reconcile(body(NAME, trigger=ONCE, singleton=True))
    assert writes(kube) == [("create", "Job", NAME)]


def test_a_schedule_is_suspended_while_a_manual_run_is_active_under_forbid() -> None:
    kube, store = FakeKube(), Store()
    store.put_bgjob(body(NAME, trigger=SCHEDULE, status={"runNowHandled": "first"}))
    store.put_child(owned("Job", f"{NAME}-m1", run="manual"), "Job", "batch/v1")
    applied: list[dict[str, Any]] = []
    kube.apply = lambda manifest, manager=MANAGER, create_only=False: (
        applied.append(manifest) or manifest
    )  # type: ignore[method-assign]
    Reconciler(cast(Kube, kube), store, clock=lambda: NOW).reconcile(KEY)
    [cronjob] = applied
    assert cronjob["spec"]["suspend"] is True


def test_run_now_holds_the_schedule_before_the_manual_run_starts() -> None:
    bgj = body(NAME, trigger=SCHEDULE, annotations={"bgjob.dev/run-now": "go"})
    kube = reconcile(bgj)
    assert [c[:2] for c in writes(kube)] == [("apply", "CronJob"), ("create", "Job")]


def scheduled_run(name: str, **status: Any) -> dict[str, Any]:
    """A Job the CronJob started: its owner is the CronJob, not the BackgroundJob."""
    job = owned("Job", name, run="scheduled", **status)
    job["metadata"]["ownerReferences"] = [
        {"kind": "CronJob", "name": NAME, "uid": "cron-uid", "controller": True}
    ]
    return job


def singleton_run_now(kube: FakeKube, *cached: dict[str, Any]) -> list[dict[str, Any]]:
    """A reconcile of a singleton schedule asked to run now; the CronJobs applied."""
    store = Store()
    bgj = body(NAME, trigger=SCHEDULE, singleton=True, annotations={"bgjob.dev/run-now": "go"})
    store.put_bgjob(bgj)
    for child in cached:
        store.put_child(child, child["kind"], child["apiVersion"])
    applied: list[dict[str, Any]] = []

    def apply(
        manifest: dict[str, Any], manager: str = MANAGER, *, create_only: bool = False
    ) -> dict[str, Any]:
        kube.calls.append(("apply", manifest["kind"], manifest["metadata"]["name"]))
        applied.append(manifest)
        return copy.deepcopy(manifest)

    kube.apply = apply  # type: ignore[method-assign]
    Reconciler(cast(Kube, kube), store, clock=lambda: NOW).reconcile(KEY)
    return applied


def test_singleton_run_now_sees_a_scheduled_run_the_cache_has_not_yet() -> None:
    # The CronJob created its Job a moment ago; the watch event has not arrived.
    kube = FakeKube(jobs=[scheduled_run(f"{NAME}-29012345")])
    [cronjob] = singleton_run_now(kube)
    order = [c[:2] for c in kube.calls if c[0] in ("apply", "list", "create")]
    assert order == [("apply", "CronJob"), ("list", "Job")]  # held, read live, nothing started
    assert cronjob["spec"]["suspend"] is True
    [listed] = [c for c in kube.calls if c[0] == "list"]
    assert listed[2:] == (
        "app.kubernetes.io/instance=worker,app.kubernetes.io/managed-by=bgjob-operator",
        NS,
    )
    assert ("event", "RunNowSkipped") in kube.calls
    assert f"run {NAME}-29012345 is still active" in " ".join(kube.messages)
    assert kube.statuses[-1]["runNowHandled"] == "go"


def test_singleton_run_now_starts_when_the_live_read_shows_no_active_run() -> None:
    kube = FakeKube(
        jobs=[
            scheduled_run(f"{NAME}-29012344", conditions=[{"type": "Complete", "status": "True"}])
        ]
    )
    singleton_run_now(kube)
    order = [c[:2] for c in kube.calls if c[0] in ("apply", "list", "create")]
    assert order == [("apply", "CronJob"), ("list", "Job"), ("create", "Job")]


def test_singleton_run_now_reads_nothing_live_when_the_cache_shows_an_active_run() -> None:
    kube = FakeKube()
    cronjob = owned("CronJob")
    cronjob["metadata"]["uid"] = "cron-uid"
    singleton_run_now(kube, cronjob, scheduled_run(f"{NAME}-29012345"))
    assert not [c for c in kube.calls if c[0] in ("list", "create")]
    assert ("event", "RunNowSkipped") in kube.calls


def test_a_suspended_queue_worker_reports_no_stale_backlog() -> None:
    bgj = body(NAME, trigger=queue(), suspend=True, status={"queueLength": 99})
    kube = reconcile(bgj, scaler=FakeScaler())
    assert "queueLength" not in kube.statuses[-1]


def test_a_tracked_queue_worker_reports_the_scalers_backlog() -> None:
    kube = reconcile(body(NAME, trigger=queue(), status={"queueLength": 99}), scaler=FakeScaler())
    assert kube.statuses[-1]["queueLength"] == 12


def test_the_once_run_is_recorded_before_its_job_is_created() -> None:
    kube = reconcile(body(NAME, trigger=ONCE))
    order = [c[0] for c in kube.calls if c[0] in ("status", "create")]
    assert order[:2] == ["status", "create"]
    assert kube.statuses[0]["onceRunStarted"] == "2026-03-01T12:05:00Z"


def test_a_once_run_whose_job_vanished_unrecorded_is_not_run_again() -> None:
    # The operator created the Job and died; the Job ran and its TTL removed it.
    bgj = body(NAME, trigger=ONCE, status={"onceRunStarted": "2026-03-01T12:00:01Z"})
    kube = reconcile(bgj)
    assert writes(kube) == []
    status = kube.statuses[-1]
    assert status["state"] == "Failed"
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "RunLost"
    assert "bgjob.dev/run-now" in failed["message"]


def _once_run_created_as(error: ApiError) -> FakeKube:
    """A reconcile of a due once-run whose Job create fails with ``error``."""
    kube, store = FakeKube(), Store()
    store.put_bgjob(body(NAME, trigger=ONCE))

    def refuse(manifest: dict[str, Any]) -> dict[str, Any]:
        raise error

    kube.create = refuse  # type: ignore[method-assign]
    reconciler = Reconciler(cast(Kube, kube), store, clock=lambda: NOW)
    if error.permanent:
        reconciler.reconcile(KEY)
    else:
        with pytest.raises(ApiError):
            reconciler.reconcile(KEY)
    return kube


def test_a_once_run_the_server_failed_to_create_is_unclaimed_and_retried() -> None:
    kube = _once_run_created_as(ApiError(503, "ServiceUnavailable", "etcd leader changed"))
    claim, release = kube.statuses
    assert claim["onceRunStarted"] == "2026-03-01T12:05:00Z"
    assert "onceRunStarted" not in release


def test_a_once_run_the_server_refuses_is_not_recorded_as_started() -> None:
    kube = _once_run_created_as(ApiError(403, "Forbidden", 'exceeded quota: "jobs"'))
    final = kube.statuses[-1]
    assert "onceRunStarted" not in final
    degraded = next(c for c in final["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "RunRejected"


# --- a failed run: its pods are read once ----------------------------------------------

FAILED = {
    "startTime": "2026-03-01T12:00:01Z",
    "conditions": [
        {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
            "lastTransitionTime": "2026-03-01T12:00:09Z",
        }
    ],
}


def run_pod(code: int, reason: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{NAME}-x7k2p", "labels": {"batch.kubernetes.io/job-name": NAME}},
        "spec": {"containers": [{"name": "worker", "env": [{"name": "TOKEN", "value": "t"}]}]},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "worker",
                    "state": {"terminated": {"exitCode": code, "reason": reason}},
                }
            ],
        },
    }


def failed_once_run(kube: FakeKube) -> tuple[Reconciler, Store]:
    store = Store()
    store.put_bgjob(body(NAME, trigger=ONCE, status={"onceRunStarted": "2026-03-01T12:00:00Z"}))
    store.put_child(owned("Job", run="once", **FAILED), "Job", "batch/v1")
    return Reconciler(cast(Kube, kube), store, clock=lambda: NOW), store


def twice(kube: FakeKube) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    """Reconcile a failed once-run, then again once the watch brings back the status
    written: the calls of the second pass, and the status the first one wrote."""
    reconciler, store = failed_once_run(kube)
    reconciler.reconcile(KEY)
    written = kube.statuses[-1]
    store.put_bgjob(body(NAME, trigger=ONCE, status=written))
    first = len(kube.calls)
    reconciler.reconcile(KEY)
    return kube.calls[first:], written


def test_a_failed_runs_pods_are_read_once_and_its_exit_code_recorded() -> None:
    kube = FakeKube(pods=[run_pod(42, "Error")])
    second, written = twice(kube)
    reads = [call for call in kube.calls if call[0] == "list"]
    assert reads == [("list", "Pod", f"batch.kubernetes.io/job-name={NAME}", NS)]
    assert written["lastRun"]["exitCode"] == 42
    assert written["lastRun"]["reason"] == "BackoffLimitExceeded"
    assert written["lastRun"]["message"] == "container worker exited with code 42 (Error)"
    assert kube.messages == [
        f"run {NAME} failed: BackoffLimitExceeded: container worker exited with code 42 (Error)"
    ]
    # Recorded: the next pass makes no API call at all.
    assert second == []


def test_an_oom_killed_run_is_recorded_as_oom_killed_in_status_and_event() -> None:
    kube = FakeKube(pods=[run_pod(137, "OOMKilled")])
    second, written = twice(kube)
    assert (written["lastRun"]["reason"], written["lastRun"]["exitCode"]) == ("OOMKilled", 137)
    failed = next(c for c in written["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "OOMKilled"
    assert kube.messages == [
        f"run {NAME} failed: OOMKilled: container worker was OOMKilled (exit code 137)"
    ]
    assert second == []


def test_a_failed_run_whose_pods_are_gone_keeps_the_jobs_reason_and_is_not_read_again() -> None:
    kube = FakeKube(pods=[])
    second, written = twice(kube)
    assert [c[0] for c in kube.calls].count("list") == 1
    assert "exitCode" not in written["lastRun"]
    assert written["lastRun"]["message"] == "Job has reached the specified backoff limit"
    assert kube.messages == [f"run {NAME} failed: BackoffLimitExceeded"]
    assert second == []


def test_pods_the_operator_may_not_list_leave_the_jobs_reason() -> None:
    kube = FakeKube(pods=ApiError(403, "Forbidden", 'cannot list resource "pods"'))
    second, written = twice(kube)
    assert written["lastRun"]["reason"] == "BackoffLimitExceeded"
    assert "exitCode" not in written["lastRun"]
    assert second == []


def test_a_transient_error_reading_the_pods_retries_the_pass_before_any_write() -> None:
    kube = FakeKube(pods=ApiError(503, "ServiceUnavailable", "etcd leader changed"))
    reconciler, _ = failed_once_run(kube)
    with pytest.raises(ApiError):
        reconciler.reconcile(KEY)
    assert [c[0] for c in kube.calls] == ["list"]


def test_a_successful_run_reads_no_pods() -> None:
    store, kube = Store(), FakeKube()
    store.put_bgjob(body(NAME, trigger=ONCE, status={"onceRunStarted": "2026-03-01T12:00:00Z"}))
    complete = {"conditions": [{"type": "Complete", "status": "True"}]}
    store.put_child(owned("Job", run="once", **complete), "Job", "batch/v1")
    Reconciler(cast(Kube, kube), store, clock=lambda: NOW).reconcile(KEY)
    assert "list" not in [c[0] for c in kube.calls]


# --- busy-aware scale-in ----------------------------------------------------------------

RS_UID, DEPLOYMENT_UID = "rs-uid-1", "deployment-uid-1"
POOL = [f"{NAME}-5d8f-{suffix}" for suffix in ("aaaaa", "bbbbb", "ccccc")]


class PoolKube(FakeKube):
    """A Deployment's ReplicaSet and its three pods, as metadata lists; PATCHes recorded."""

    def list_metadata(
        self, kind: str, label_selector: str, namespace: str, most: int = 0
    ) -> list[dict[str, Any]]:
        self.calls.append(("list_metadata", kind))
        if kind == "ReplicaSet":
            ref = {"apiVersion": "apps/v1", "kind": "Deployment", "uid": DEPLOYMENT_UID}
            meta = {
                "name": f"{NAME}-5d8f",
                "uid": RS_UID,
                "labels": {"pod-template-hash": "5d8f"},
                "ownerReferences": [{**ref, "name": NAME, "controller": True}],
            }
            return [{"metadata": meta}]
        ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "uid": RS_UID, "controller": True}
        return [{"metadata": {"name": pod, "ownerReferences": [ref]}} for pod in POOL]

    def __init__(self, bgj: dict[str, Any]) -> None:
        super().__init__()
        self.bgj = bgj

    def request(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("patch", url.rsplit("/", 1)[-1]))
        return {}

    def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        super().apply_status(namespace, name, status)
        return {**copy.deepcopy(self.bgj), "status": status}


def test_a_scale_in_held_up_by_busy_pods_is_applied_once_and_a_second_pass_writes_nothing() -> None:
    """The floor of busy pods is in the replicas the plan hashes: the pass that finds
    them applies 3→2 and marks the pods, the next (after another poll) writes nothing."""
    bgj = body(
        NAME,
        trigger={
            "queue": {"rq": {"url": "redis://r:6379/0", "queues": ["q"]}, "cooldownSeconds": 0}
        },
        concurrency=4,
    )
    scaler = Scaler(cast(Kube, None), lambda _: None, policy=NetworkPolicy())
    scaler.track(parse(bgj), 3)
    target = scaler._targets[KEY]
    work = Work(backlog=0, busy=frozenset(POOL[:2]), activity="same")
    scaler._update(target, work, None)  # a poll: no job waits, two workers hold one
    deployment = owned("Deployment")
    deployment["metadata"]["uid"] = DEPLOYMENT_UID
    deployment["spec"] = {"replicas": 3, "selector": {"matchLabels": {"bgjob.dev/name": NAME}}}
    kube, store = PoolKube(bgj), Store()
    store.put_bgjob(bgj)
    store.put_child(deployment, "Deployment", "apps/v1")
    reconciler = Reconciler(cast(Kube, kube), store, clock=lambda: NOW, scaler=scaler)
    try:
        reconciler.reconcile(KEY)
        applied = [c for c in kube.calls if c[0] in ("apply", "patch")]
        assert applied[-1] == ("apply", "Deployment", NAME)
        assert sorted(c[1] for c in applied[:-1]) == POOL, "every pod marked before"
        assert store.children(KEY)[("Deployment", NAME)]["spec"]["replicas"] == 2
        scaler._update(target, work, None)  # the next poll sees the same
        kube.calls.clear()
        reconciler.reconcile(KEY)
        assert kube.calls == [], "the second pass wrote"
    finally:
        scaler.close()


def test_busy_pods_that_cancel_a_scale_in_get_no_deletion_cost() -> None:
    bgj = body(
        NAME,
        trigger={
            "queue": {"rq": {"url": "redis://r:6379/0", "queues": ["q"]}, "cooldownSeconds": 0}
        },
        concurrency=4,
    )
    scaler = Scaler(cast(Kube, None), lambda _: None, policy=NetworkPolicy())
    scaler.track(parse(bgj), 3)
    scaler._update(scaler._targets[KEY], Work(backlog=0, busy=frozenset(POOL)), None)
    deployment = owned("Deployment")
    deployment["metadata"]["uid"] = DEPLOYMENT_UID
    deployment["spec"] = {"replicas": 3, "selector": {"matchLabels": {"bgjob.dev/name": NAME}}}
    kube, store = PoolKube(bgj), Store()
    store.put_bgjob(bgj)
    store.put_child(deployment, "Deployment", "apps/v1")
    try:
        Reconciler(cast(Kube, kube), store, clock=lambda: NOW, scaler=scaler).reconcile(KEY)
        assert [c for c in kube.calls if c[0] == "patch"] == [], "all three busy: no scale-in"
        assert store.children(KEY)[("Deployment", NAME)]["spec"]["replicas"] == 3
    finally:
        scaler.close()


class NotedScaler(FakeScaler):
    def view(self, key: tuple[str, str]) -> View | None:
        return View(replicas=3, backlog=5, problem=None, note="2 unacknowledged message(s)")


def test_a_backlog_the_scaler_could_not_attribute_is_said_in_a_condition() -> None:
    kube = reconcile(body(NAME, trigger=queue()), scaler=NotedScaler())
    (limited,) = [c for c in kube.statuses[-1]["conditions"] if c["type"] == "ScalingLimited"]
    assert limited["reason"] == "BacklogNotAttributed"
    assert limited["message"] == "2 unacknowledged message(s)"


class BusyScaler(FakeScaler):
    def view(self, key: tuple[str, str]) -> View | None:
        busy = frozenset({f"{NAME}-5d8f9c7b4-abcde", f"{NAME}-5d8f9c7b4-fghij", "laptop"})
        return View(3, 5, None, busy=busy, last_activity="2026-03-01T12:04:58Z")


def test_a_work_aware_pool_shows_its_busy_workers_and_last_activity() -> None:
    kube = reconcile(body(NAME, trigger=queue(), concurrency=4), scaler=BusyScaler())
    status = kube.statuses[-1]
    assert status["busyWorkers"] == 2  # laptop is no pod of the pool
    assert status["lastActivityTime"] == "2026-03-01T12:04:58Z"


def test_a_pool_whose_backend_knows_no_busy_workers_shows_none() -> None:
    status = reconcile(body(NAME, trigger=queue()), scaler=FakeScaler()).statuses[-1]
    assert "busyWorkers" not in status and "lastActivityTime" not in status
