"""The reconciler against an API stand-in (kmock), for answers a real server rarely gives.

The Reconciler uses the official (blocking) client, so each reconcile runs in a thread
while kmock serves from the test's event loop on 127.0.0.1. The handler is kmock's raw
one in strict mode: any request the test did not expect fails the test.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import kmock
import pytest
from kubernetes import client

from bgjob.handlers import Runtime
from bgjob.kube import ApiError, Kube
from bgjob.reconcile import Reconciler
from bgjob.store import Store
from bgjob.workqueue import WorkQueue

pytestmark = [pytest.mark.asyncio, pytest.mark.kmock(cls=kmock.RawHandler, strict=True)]

NS, NAME, UID = "shop", "thumbnailer", "6f1d2c1e-0000-4000-8000-000000000001"
KEY = (NS, NAME)
NOW = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)

BGJ = f"/apis/bgjob.dev/v1alpha1/namespaces/{NS}/backgroundjobs/{NAME}"
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}"
CRONJOB = f"/apis/batch/v1/namespaces/{NS}/cronjobs/{NAME}"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
EVENTS = f"/api/v1/namespaces/{NS}/events"


def backgroundjob(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "bgjob.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "uid": UID,
            "generation": 1,
            "resourceVersion": "100",
            "creationTimestamp": "2026-03-01T12:00:00Z",
        },
        "spec": {"image": "registry.example.com/shop/thumbnailer:1.4.2", **spec},
    }


def status_error(code: int, reason: str, message: str) -> dict[str, Any]:
    """A metav1.Status body, as the API server sends with an error."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


def served(request: kmock.Request) -> dict[str, Any]:
    """What the API server answers to an apply: the object, its defaults and its status."""
    obj = copy.deepcopy(request.data)
    obj["metadata"].update(uid="child-uid", resourceVersion="200", generation=1)
    spec = obj["spec"]
    spec.setdefault("revisionHistoryLimit", 10)
    if "strategy" in spec:
        spec["strategy"]["rollingUpdate"] = {"maxSurge": "25%", "maxUnavailable": "25%"}
    for container in spec["template"]["spec"]["containers"]:
        container.setdefault("imagePullPolicy", "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
    replicas = spec.get("replicas", 1)
    obj["status"] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }
    return obj


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def kube(kmock: kmock.RawHandler) -> Iterator[Kube]:
    configuration = client.Configuration(host=str(kmock.url).rstrip("/"))
    api = client.ApiClient(configuration)
    yield Kube(api)
    api.close()


@pytest.fixture
def reconciler(kube: Kube, store: Store) -> Reconciler:
    return Reconciler(kube, store, clock=lambda: NOW)


@pytest.fixture
def accepts_status_and_events(kmock: kmock.RawHandler) -> None:
    """The status subresource and Events take whatever the operator writes."""
    kmock[f"patch {BGJ}/status"] << (lambda request: request.data)
    kmock[f"post {EVENTS}"] << 201 << (lambda request: request.data)
    # Before creating a child it does not have cached, the operator checks the name is free.
    kmock[f"get {DEPLOYMENT}"] << 404 << status_error(404, "NotFound", "not found")


def requests(handler: kmock.RawHandler, method: str, path: str) -> list[kmock.Request]:
    return [r for r in handler if r.method.value == method and r.url.path == path]


def written_status(handler: kmock.RawHandler) -> dict[str, Any]:
    """The status of the last status PATCH."""
    patches = requests(handler, "PATCH", f"{BGJ}/status")
    assert patches, "no status was written"
    status: dict[str, Any] = patches[-1].data["status"]
    return status


def condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)


def events(handler: kmock.RawHandler) -> list[tuple[str, str]]:
    return [(r.data["type"], r.data["reason"]) for r in requests(handler, "POST", EVENTS)]


def owned_child(kind: str, api_version: str) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "labels": {
                "app.kubernetes.io/instance": NAME,
                "app.kubernetes.io/managed-by": "bgjob-operator",
            },
            "ownerReferences": [
                {
                    "apiVersion": "bgjob.dev/v1alpha1",
                    "kind": "BackgroundJob",
                    "name": NAME,
                    "uid": UID,
                    "controller": True,
                }
            ],
        },
        "spec": {},
        "status": {},
    }


@pytest.mark.usefixtures("accepts_status_and_events")
async def test_a_conflict_creating_the_once_run_means_it_started_already(
    kmock: kmock.RawHandler, store: Store, reconciler: Reconciler
) -> None:
    (
        kmock[f"post {JOBS}"]
        << 409
        << status_error(409, "AlreadyExists", f'jobs.batch "{NAME}" already exists')
    )
    kmock[f"get {JOBS}/{NAME}"] << owned_child("Job", "batch/v1")  # ours: it started already
    store.put_bgjob(backgroundjob(trigger={"once": {}}))

    wake = await asyncio.to_thread(reconciler.reconcile, KEY)

    assert wake is None  # nothing to come back for: the Job's own events will tell
    assert len(requests(kmock, "POST", JOBS)) == 1
    status = written_status(kmock)
    assert status["state"] != "Degraded"
    assert condition(status, "Degraded")["status"] == "False"
    assert [kind for kind, _ in events(kmock)].count("Warning") == 0


@pytest.mark.usefixtures("accepts_status_and_events")
async def test_a_pruned_child_that_is_gone_already_is_fine(
    kmock: kmock.RawHandler, store: Store, reconciler: Reconciler
) -> None:
    # The trigger changed from schedule to continuous; the old CronJob vanished meanwhile.
    kmock[f"patch {DEPLOYMENT}"] << served
    (
        kmock[f"delete {CRONJOB}"]
        << 404
        << status_error(404, "NotFound", f'cronjobs.batch "{NAME}" not found')
    )
    store.put_bgjob(backgroundjob(trigger={"continuous": {}}))
    store.put_child(owned_child("CronJob", "batch/v1"), "CronJob", "batch/v1")

    await asyncio.to_thread(reconciler.reconcile, KEY)

    (delete,) = requests(kmock, "DELETE", CRONJOB)
    assert delete.data == {"propagationPolicy": "Background"}
    assert len(requests(kmock, "PATCH", DEPLOYMENT)) == 1
    status = written_status(kmock)
    assert condition(status, "Degraded")["status"] == "False"
    assert status["workload"]["kind"] == "Deployment"


async def test_a_server_error_on_apply_raises_so_the_queue_retries(
    kmock: kmock.RawHandler, store: Store, reconciler: Reconciler
) -> None:
    kmock[f"patch {DEPLOYMENT}"] << 500 << status_error(500, "InternalError", "etcd timeout")
    kmock[f"get {DEPLOYMENT}"] << 404 << status_error(404, "NotFound", "not found")
    store.put_bgjob(backgroundjob(trigger={"continuous": {}}))

    with pytest.raises(ApiError) as error:
        await asyncio.to_thread(reconciler.reconcile, KEY)

    assert error.value.status == 500
    assert not error.value.permanent
    # A blip is not a Degraded object: the status is left alone until the retry.
    assert requests(kmock, "PATCH", f"{BGJ}/status") == []


async def test_a_server_error_on_apply_is_retried_with_growing_backoff(
    kmock: kmock.RawHandler, kube: Kube, store: Store
) -> None:
    attempts: list[float] = []

    def failing(request: kmock.Request) -> dict[str, Any]:
        attempts.append(time.monotonic())
        return status_error(500, "InternalError", "etcd timeout")

    kmock[f"patch {DEPLOYMENT}"] << 500 << failing
    kmock[f"get {DEPLOYMENT}"] << 404 << status_error(404, "NotFound", "not found")
    # Before creating a child, the runtime checks that its owner still exists.
    kmock[f"get {BGJ}"] << backgroundjob(trigger={"continuous": {}})
    runtime = Runtime(kube=kube, workers=1, store=store)
    runtime.queue = WorkQueue(base_delay=0.2, max_delay=10.0)
    runtime.tasks += [
        asyncio.create_task(runtime.queue.run_delayed()),
        asyncio.create_task(runtime.queue.run_worker(runtime._handle)),
    ]
    store.put_bgjob(backgroundjob(trigger={"continuous": {}}))
    try:
        runtime.queue.add(KEY)
        await asyncio.sleep(1.7)  # attempts at about 0, 0.2, 0.6, 1.4 s
    finally:
        await runtime.stop()

    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert 3 <= len(attempts) <= 4, gaps
    assert gaps[0] >= 0.19  # not a hot loop
    assert all(later >= earlier + 0.1 for earlier, later in itertools.pairwise(gaps))
    assert requests(kmock, "PATCH", f"{BGJ}/status") == []


@pytest.mark.usefixtures("accepts_status_and_events")
async def test_an_apply_the_server_rejects_becomes_a_degraded_status(
    kmock: kmock.RawHandler, store: Store, reconciler: Reconciler
) -> None:
    message = (
        'Deployment.apps "thumbnailer" is invalid: spec.template.spec.priorityClassName: '
        'Invalid value: "Urgent!": a lowercase RFC 1123 subdomain must consist of ...'
    )
    kmock[f"patch {DEPLOYMENT}"] << 422 << status_error(422, "Invalid", message)
    store.put_bgjob(
        backgroundjob(
            trigger={"continuous": {}}, template={"spec": {"priorityClassName": "Urgent!"}}
        )
    )

    wake = await asyncio.to_thread(reconciler.reconcile, KEY)  # no exception: no retry storm

    assert wake is None
    assert len(requests(kmock, "PATCH", DEPLOYMENT)) == 1
    (patch,) = requests(kmock, "PATCH", f"{BGJ}/status")
    assert patch.params["fieldManager"] == "bgjob-operator"
    assert patch.headers["Content-Type"].startswith("application/apply-patch+yaml")
    status = patch.data["status"]
    assert status["state"] == "Degraded"
    assert status["observedGeneration"] == 1
    degraded = condition(status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ApplyFailed")
    assert "priorityClassName" in degraded["message"]
    assert condition(status, "Stalled")["status"] == "True"
    assert condition(status, "Ready")["status"] == "False"
    assert ("Warning", "ApplyFailed") in events(kmock)


@pytest.mark.usefixtures("accepts_status_and_events")
async def test_a_second_reconcile_of_an_unchanged_object_writes_nothing(
    kmock: kmock.RawHandler, store: Store, reconciler: Reconciler
) -> None:
    kmock[f"patch {DEPLOYMENT}"] << served
    body = backgroundjob(
        trigger={"continuous": {}},
        concurrency=2,
        env=[{"name": "LOG_LEVEL", "value": "info"}],
        resources={"requests": {"cpu": "100m", "memory": "128Mi"}},
        shutdown={"gracePeriodSeconds": 45, "preStopSleepSeconds": 5},
    )
    store.put_bgjob(body)

    await asyncio.to_thread(reconciler.reconcile, KEY)
    first = len(kmock)
    assert len(requests(kmock, "PATCH", DEPLOYMENT)) == 1
    assert written_status(kmock)["state"] == "Running"
    assert condition(written_status(kmock), "Ready")["status"] == "True"

    # The watch delivers the status we wrote; nothing else changed.
    store.put_bgjob({**body, "status": written_status(kmock)})
    await asyncio.to_thread(reconciler.reconcile, KEY)

    assert len(kmock) == first, [f"{r.method.value} {r.url.path}" for r in list(kmock)[first:]]
