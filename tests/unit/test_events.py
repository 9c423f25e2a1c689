"""Events leave from their own thread: in order, never blocking, never raising."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from bgjob.events import EventSender
from bgjob.kube import ApiError, Fenced

BODY = {"metadata": {"name": "mailer", "namespace": "shop", "uid": "u1"}}


class Recorder:
    def __init__(self, fail: Exception | None = None, gate: threading.Event | None = None) -> None:
        self.sent: list[str] = []
        self.fail = fail
        self.gate = gate
        self.done = threading.Event()

    def event(self, involved: dict[str, Any], kind: str, reason: str, message: str) -> None:
        if self.gate is not None:
            self.gate.wait(5)
        self.sent.append(reason)
        if self.fail is not None:
            raise self.fail
        if reason == "Last":
            self.done.set()


def test_events_are_sent_in_order_from_another_thread() -> None:
    kube = Recorder()
    sender = EventSender(kube)  # type: ignore[arg-type]
    for reason in ("Created", "Scaled", "Last"):
        sender.send(BODY, "Normal", reason, "m")
    assert kube.done.wait(5)
    sender.stop()
    assert kube.sent == ["Created", "Scaled", "Last"]


def test_a_full_queue_drops_an_event_instead_of_blocking_the_reconcile() -> None:
    gate = threading.Event()
    kube = Recorder(gate=gate)
    sender = EventSender(kube, max_pending=2)  # type: ignore[arg-type]
    for i in range(6):  # one in the sender's hands, two queued, the rest dropped
        sender.send(BODY, "Normal", f"E{i}", "m")
    assert sender.dropped >= 3
    gate.set()
    sender.stop()


@pytest.mark.parametrize("error", [ApiError(403, "Forbidden", "no"), Fenced("stopping")])
def test_a_failed_event_is_logged_not_raised(
    error: ApiError, caplog: pytest.LogCaptureFixture
) -> None:
    kube = Recorder(fail=error)
    sender = EventSender(kube)  # type: ignore[arg-type]
    sender.deliver(BODY, "Warning", "ApplyFailed", "m")
    assert kube.sent == ["ApplyFailed"]
    assert "event not recorded reason=ApplyFailed" in caplog.text


def test_stop_drops_what_is_still_queued_and_returns() -> None:
    gate = threading.Event()
    kube = Recorder(gate=gate)
    sender = EventSender(kube)  # type: ignore[arg-type]
    for i in range(5):
        sender.send(BODY, "Normal", f"E{i}", "m")
    threading.Timer(0.2, gate.set).start()
    sender.stop(timeout=2)
    assert len(kube.sent) <= 1, "only the Event in flight was sent"


def test_drops_are_logged_once_per_hundred_not_each(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()
    sender = EventSender(Recorder(gate=gate), max_pending=1)  # type: ignore[arg-type]
    for i in range(250):
        sender.send(BODY, "Normal", f"E{i}", "m")
    gate.set()
    sender.stop()
    lines = [r for r in caplog.records if "events dropped" in r.getMessage()]
    assert sender.dropped >= 200
    assert 2 <= len(lines) <= 4


class Stuck:
    """Holds every Event about the object ``slow`` until released; records the rest."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.sent: list[str] = []
        self.other = threading.Event()

    def event(self, involved: dict[str, Any], kind: str, reason: str, message: str) -> None:
        if involved["metadata"]["name"] == "slow":
            self.release.wait(5)
        self.sent.append(involved["metadata"]["name"])
        if involved["metadata"]["name"] != "slow":
            self.other.set()


def test_a_slow_event_does_not_hold_up_other_objects_events() -> None:
    kube = Stuck()
    sender = EventSender(kube)  # type: ignore[arg-type]
    sender.send({"metadata": {"name": "slow", "namespace": "shop"}}, "Normal", "Created", "m")
    for i in range(20):  # some land on other threads than the slow one
        sender.send({"metadata": {"name": f"w{i}", "namespace": "shop"}}, "Normal", "Created", "m")
    assert kube.other.wait(5)
    assert "slow" not in kube.sent
    kube.release.set()
    sender.stop()
