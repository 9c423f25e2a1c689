"""An unexpected reconcile error: bounded retries, then Degraded with an Event, logged once.

The workers and the queue are the operator's; the reconcile itself fails on purpose
(a bug the operator must survive). The status and the Event go to a kmock stand-in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import kmock
import pytest
from kubernetes import client

from bgjob.handlers import Runtime, degraded_status, error_message
from bgjob.kube import Kube
from bgjob.store import Store
from bgjob.workqueue import WorkQueue

AGAINST_KMOCK = [pytest.mark.asyncio, pytest.mark.kmock(cls=kmock.RawHandler, strict=True)]

NS, NAME = "shop", "broken"
BGJ = f"/apis/bgjob.dev/v1alpha1/namespaces/{NS}/backgroundjobs/{NAME}"
EVENTS = f"/api/v1/namespaces/{NS}/events"
READY = {
    "type": "Ready",
    "status": "True",
    "reason": "WorkloadReady",
    "message": "1 of 1 pods ready",
    "lastTransitionTime": "2026-03-01T12:00:00Z",
    "observedGeneration": 3,
}
STATUS = {"state": "Running", "readyReplicas": 1, "observedGeneration": 3, "conditions": [READY]}


def backgroundjob() -> dict[str, Any]:
    return {
        "apiVersion": "bgjob.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "uid": "u-1",
            "generation": 3,
            "resourceVersion": "10",
        },
        "spec": {"image": "worker:1", "trigger": {"continuous": {}}},
        "status": STATUS,
    }


class Bug:
    """A reconciler with a bug: always the same unexpected error."""

    def __init__(self) -> None:
        self.calls = 0

    def reconcile(self, key: tuple[str, str]) -> float | None:
        self.calls += 1
        raise KeyError("spec.template\nTraceback (most recent call last): ...")


@pytest.fixture
def kube(kmock: kmock.RawHandler) -> Iterator[Kube]:
    api = client.ApiClient(client.Configuration(host=str(kmock.url).rstrip("/")))
    yield Kube(api)
    api.close()


def requests(handler: kmock.RawHandler, method: str, path: str) -> list[kmock.Request]:
    return [r for r in handler if r.method.value == method and r.url.path == path]


@AGAINST_KMOCK[0]
@AGAINST_KMOCK[1]
async def test_repeated_unexpected_errors_end_in_degraded_with_one_event_and_one_traceback(
    kmock: kmock.RawHandler, kube: Kube, caplog: pytest.LogCaptureFixture
) -> None:
    kmock[f"patch {BGJ}/status"] << (lambda request: {**backgroundjob(), **request.data})
    kmock[f"post {EVENTS}"] << 201 << (lambda request: request.data)
    store = Store()
    store.put_bgjob(backgroundjob())
    runtime = Runtime(kube=kube, workers=1, store=store)
    bug = Bug()
    runtime.reconciler = bug  # type: ignore[assignment]
    runtime.queue = WorkQueue(base_delay=0.02, max_delay=0.3)
    runtime.tasks += [
        asyncio.create_task(runtime.queue.run_delayed()),
        asyncio.create_task(runtime.queue.run_worker(runtime._handle)),
    ]
    caplog.set_level(logging.WARNING, logger="bgjob.operator")
    try:
        runtime.queue.add((NS, NAME))
        await asyncio.sleep(2.5)
    finally:
        await runtime.stop()

    assert bug.calls >= 8, "it kept retrying, backing off"
    assert bug.calls <= 20, "the backoff reached its long interval: no hot loop"
    (patch,) = requests(kmock, "PATCH", f"{BGJ}/status")
    assert patch.params == {"fieldManager": "bgjob-operator", "force": "true"}
    status = patch.data["status"]
    assert status["state"] == "Degraded"
    assert status["readyReplicas"] == 1, "the rest of the status is kept"
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ReconcileError")
    assert degraded["message"].startswith("reconcile failed 5 times in a row: KeyError")
    assert "\n" not in degraded["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    (event,) = requests(kmock, "POST", EVENTS)
    assert (event.data["type"], event.data["reason"]) == ("Warning", "ReconcileError")
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, "the traceback is logged once per distinct error"


@pytest.mark.parametrize(
    ("before", "kept_transition"),
    [
        ({}, False),
        ({"conditions": [READY]}, False),
        (
            {
                "conditions": [
                    {**READY, "type": "Degraded", "status": "True", "reason": "ApplyFailed"}
                ]
            },
            True,
        ),
    ],
)
def test_degraded_status_keeps_what_was_there(
    before: dict[str, Any], kept_transition: bool
) -> None:
    after = degraded_status({**before, "queueLength": 4}, 3, "boom", "2026-03-02T00:00:00Z")
    assert after["queueLength"] == 4
    assert after["state"] == "Degraded"
    by_type = {c["type"]: c for c in after["conditions"]}
    assert by_type["Degraded"]["reason"] == "ReconcileError"
    assert by_type["Degraded"]["observedGeneration"] == 3
    transition = by_type["Degraded"]["lastTransitionTime"]
    assert (transition == READY["lastTransitionTime"]) is kept_transition
    assert by_type["Ready"]["status"] == "False"


def test_error_message_is_one_short_line() -> None:
    message = error_message(ValueError("a\n  b" + "x" * 1000), 5)
    assert message.startswith("reconcile failed 5 times in a row: ValueError: a b")
    assert "\n" not in message and len(message) < 400
