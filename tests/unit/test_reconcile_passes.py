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

from bgjob.api.names import MANAGER
from bgjob.kube import ApiError, Kube
from bgjob.reconcile import Reconciler
from bgjob.scaling.scaler import Scaler
from bgjob.store import Store

NS, NAME, UID = "shop", "worker", "0b7c3e2a-uid"
KEY = (NS, NAME)
NOW = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
API = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "CronJob": "batch/v1", "Job": "batch/v1"}


class FakeKube:
    """Records every call; apply and create answer with the object, delete forgets it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.statuses: list[dict[str, Any]] = []

    def apply(self, manifest: dict[str, Any], manager: str = MANAGER) -> dict[str, Any]:
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
    kube.apply = lambda manifest, manager=MANAGER: applied.append(manifest) or manifest  # type: ignore[method-assign]
    Reconciler(cast(Kube, kube), store, clock=lambda: NOW).reconcile(KEY)
    [cronjob] = applied
    assert cronjob["spec"]["suspend"] is True


def test_run_now_holds_the_schedule_before_the_manual_run_starts() -> None:
    bgj = body(NAME, trigger=SCHEDULE, annotations={"bgjob.dev/run-now": "go"})
    kube = reconcile(bgj)
    assert [c[:2] for c in writes(kube)] == [("apply", "CronJob"), ("create", "Job")]


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
