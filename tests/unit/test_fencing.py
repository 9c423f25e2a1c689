"""Leadership fencing and Retry-After: pure decisions, and no write leaves when fenced."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from bgjob.kube import ApiError, Fenced, Kube, retry_after
from bgjob.leader import LeaderElector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lease:
    """Answers the Lease GET and PUT; any other request fails the test."""

    def __init__(self) -> None:
        self.spec: dict[str, Any] = {}
        self.sent: list[tuple[str, str]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        self.sent.append((method, url))
        assert url.endswith("/leases/bgjob-operator"), url
        if method == "GET":
            return {"metadata": {"name": "bgjob-operator"}, "spec": dict(self.spec)}
        self.spec = kwargs["body"]["spec"]
        return kwargs["body"]  # type: ignore[no-any-return]


def elector(clock: Clock, lease: Lease) -> LeaderElector:
    return LeaderElector(
        lease,  # type: ignore[arg-type]
        namespace="ops",
        name="bgjob-operator",
        identity="me",
        lease_seconds=15,
        renew_deadline=10.0,
        clock=clock,
    )


def test_no_write_before_the_lease_is_held() -> None:
    with pytest.raises(Fenced):
        elector(Clock(), Lease()).fence()


def test_a_write_gets_until_the_lease_would_run_out_and_none_after_the_deadline() -> None:
    clock, lease = Clock(), Lease()
    leader = elector(clock, lease)
    assert leader.try_acquire_or_renew()
    assert leader.fence() == pytest.approx(15.0)
    clock.now += 9.0
    assert leader.fence() == pytest.approx(6.0)
    clock.now += 1.5  # past the renew deadline, however long the process slept
    with pytest.raises(Fenced):
        leader.fence()
    assert leader.try_acquire_or_renew()  # renewed: writes may go again
    assert leader.fence() == pytest.approx(15.0)


def test_a_released_lease_fences_at_once() -> None:
    clock, lease = Clock(), Lease()
    leader = elector(clock, lease)
    leader.try_acquire_or_renew()
    leader.release()
    with pytest.raises(Fenced):
        leader.fence()


class Unreachable:
    """An ApiClient that prepares requests but must never send one."""

    def param_serialize(self, **kwargs: Any) -> Any:
        return kwargs["method"], kwargs["resource_path"], {}, kwargs["body"], None

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a fenced write was sent")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_fenced_kube_sends_no_write(method: str) -> None:
    def fence() -> float:
        raise Fenced("lease lost")

    kube = Kube(Unreachable(), fence=fence)  # type: ignore[arg-type]
    with pytest.raises(Fenced) as error:
        kube.request(method, "/apis/apps/v1/namespaces/shop/deployments/x", body={})
    assert not error.value.permanent  # the queue retries; the lost Lease stops it first


def test_a_fenced_kube_still_reads() -> None:
    def fence() -> float:
        raise Fenced("lease lost")

    kube = Kube(Unreachable(), fence=fence)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="sent"):  # got as far as sending: not fenced
        kube.request("GET", "/api/v1/namespaces/shop/secrets/x")


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("-4", 0.0),
        ("99999", 600.0),
        ("Sun, 01 Mar 2026 12:00:20 GMT", 20.0),
        ("nonsense", None),
        ("nan", None),
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert retry_after(header, NOW) == seconds


def test_api_error_carries_no_retry_after_by_default() -> None:
    assert ApiError(500, "InternalError", "boom").retry_after is None


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_closing_kube_sends_no_write_even_without_a_fence(method: str) -> None:
    kube = Kube(Unreachable())  # type: ignore[arg-type]
    kube.closing = True  # SIGTERM: a reconcile in flight stops at its next write
    with pytest.raises(Fenced, match="stopping"):
        kube.request(method, "/apis/apps/v1/namespaces/shop/deployments/x", body={})


class SlowLease(Lease):
    """A Lease whose first PUT waits until the test lets it go (a renewal in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.put_started, self.go = threading.Event(), threading.Event()

    def request(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        if method == "PUT" and not self.go.is_set():
            self.put_started.set()
            self.go.wait(5)
        return super().request(method, url, **kwargs)


def test_a_renewal_in_flight_at_shutdown_does_not_keep_the_lease() -> None:
    clock, lease = Clock(), SlowLease()
    leader = elector(clock, lease)
    lease.go.set()
    assert leader.try_acquire_or_renew()
    lease.go.clear()
    renewal = threading.Thread(target=leader.try_acquire_or_renew)
    renewal.start()
    assert lease.put_started.wait(5)
    releasing = threading.Thread(target=leader.release)
    releasing.start()
    time.sleep(0.1)
    lease.go.set()  # the renewal lands first; the release then reads it and gives it up
    renewal.join(5)
    releasing.join(5)
    assert lease.spec["holderIdentity"] is None
    assert not leader.try_acquire_or_renew()  # nothing renews after the release
    assert lease.spec["holderIdentity"] is None


def test_a_closing_kube_still_reads_and_releases_its_lease() -> None:
    kube = Kube(Unreachable())  # type: ignore[arg-type]
    kube.closing = True
    with pytest.raises(AssertionError, match="sent"):
        kube.request("GET", "/api/v1/namespaces/shop/secrets/x")
    with pytest.raises(AssertionError, match="sent"):  # the Lease's own write is not fenced
        kube.request("PUT", "/apis/coordination.k8s.io/v1/namespaces/ops/leases/x", fenced=False)


def test_writes_are_counted_and_reads_and_the_lease_are_not() -> None:
    kube = Kube(Unreachable())  # type: ignore[arg-type]
    for method, fenced in (("GET", True), ("PUT", False), ("PATCH", True), ("POST", True)):
        with pytest.raises(AssertionError):
            kube.request(method, "/apis/apps/v1/namespaces/shop/deployments/x", fenced=fenced)
    assert kube.writes == 2
