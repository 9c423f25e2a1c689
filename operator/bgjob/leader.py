"""Leader election on a coordination.k8s.io Lease, the way client-go does it.

Every replica watches and keeps its cache warm; only the holder of the Lease
reconciles and scales. Expiry is judged by this process's own clock from when
it last saw the Lease change (never by comparing another pod's timestamps), so
clock skew between nodes cannot hand the Lease to two holders. A leader that
cannot renew within the renew deadline stops acting and exits, to come back
as a candidate.

Fencing: ``fence`` is called before every write (see ``Kube.fence``). Past the
renew deadline, counted from when the last successful renewal was *sent*, no write
leaves this process, even from a reconcile thread that started long before; a write
sent earlier may take only until the Lease would run out.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bgjob import metrics
from bgjob.kube import ApiError, Fenced, Kube, path

log = logging.getLogger("bgjob.leader")

# Lease calls must come back well within the renew deadline.
LEASE_TIMEOUT = (2.0, 4.0)


def micro_time(moment: datetime | None = None) -> str:
    """A metav1.MicroTime."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    """Unique per process: the pod's hostname plus a random suffix."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


@dataclass
class LeaderElector:
    """Acquires and renews one Lease; all API calls are blocking (run them in a thread)."""

    kube: Kube
    namespace: str
    name: str
    identity: str
    lease_seconds: int = 15
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._observed: dict[str, Any] | None = None  # the Lease spec last seen
        self._observed_at = 0.0
        # When the last successful acquire or renewal was sent (None: never held).
        self._renewed_at: float | None = None
        # A renewal still in flight in its thread must not overwrite the release (a
        # 409 for the release, and the Lease held until it expires): one at a time,
        # and nothing after the release.
        self._lock = threading.Lock()
        self._released = False

    def fence(self) -> float:
        """Seconds a write may take from now; raises Fenced past the renew deadline."""
        renewed = self._renewed_at
        now = self.clock()
        if renewed is None:
            raise Fenced("not the leader: no write")
        if now - renewed > self.renew_deadline:
            raise Fenced(f"lease not renewed for {now - renewed:.1f}s: no write")
        return renewed + self.lease_seconds - now

    def _url(self, name: bool = True) -> str:
        return path("Lease", self.namespace, self.name if name else None)

    def _spec(self, transitions: int, acquired: str | None = None) -> dict[str, Any]:
        now = micro_time()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        """One attempt: True when this process holds the Lease afterwards."""
        with self._lock:
            if self._released:
                return False
            return self._try_acquire_or_renew()

    def _try_acquire_or_renew(self) -> bool:
        sent = self.clock()
        try:
            lease = self.kube.request("GET", self._url(), timeout=LEASE_TIMEOUT)
        except ApiError as error:
            if error.status != 404:
                raise
            created = self._create()
            if created:
                self._renewed_at = sent
            return created
        spec = lease.get("spec") or {}
        if spec != self._observed:
            self._observed, self._observed_at = spec, self.clock()
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        held_by_other = holder and holder != self.identity
        if held_by_other and self._observed_at + duration > self.clock():
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            new_spec = self._spec(transitions, spec.get("acquireTime"))
        else:
            new_spec = self._spec(transitions + 1)
        lease["spec"] = new_spec
        try:
            self.kube.request("PUT", self._url(), body=lease, timeout=LEASE_TIMEOUT, fenced=False)
        except ApiError as error:
            if error.status == 409:  # Someone else wrote it first.
                return False
            raise
        self._observed, self._observed_at = new_spec, self.clock()
        self._renewed_at = sent
        return True

    def _create(self) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self._spec(0),
        }
        try:
            self.kube.request(
                "POST", self._url(name=False), body=body, timeout=LEASE_TIMEOUT, fenced=False
            )
        except ApiError as error:
            if error.status == 409:
                return False
            raise
        return True

    def release(self) -> None:
        """Give the Lease up at once so a standby takes over without waiting for expiry."""
        self._renewed_at = None  # nothing more from this process
        with self._lock:  # after a renewal in flight, if any; none starts afterwards
            self._released = True
            self._release()

    def _release(self) -> None:
        try:
            lease = self.kube.request("GET", self._url(), timeout=LEASE_TIMEOUT)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"].update(
                holderIdentity=None, leaseDurationSeconds=1, renewTime=micro_time()
            )
            self.kube.request("PUT", self._url(), body=lease, timeout=LEASE_TIMEOUT, fenced=False)
            log.info("released lease=%s/%s", self.namespace, self.name)
        except ApiError as error:
            log.warning("lease not released error=%s", error)

    async def run(self, leading: asyncio.Event, lost: asyncio.Event) -> None:
        """Acquire, then renew every retry period; set ``lost`` if renewal fails."""
        loop = asyncio.get_running_loop()
        log.info("waiting for lease=%s/%s identity=%s", self.namespace, self.name, self.identity)
        last_renewal = self.clock()
        while True:
            # A leader must notice within the renew deadline that it could not renew,
            # however long one request hangs: before the Lease (15 s) can pass on.
            budget = self.renew_deadline - (self.clock() - last_renewal)
            try:
                held = await asyncio.wait_for(
                    loop.run_in_executor(None, self.try_acquire_or_renew),
                    timeout=max(budget, 0.1) if leading.is_set() else None,
                )
            except Exception as error:  # Any failure, a timeout too, is a failed renewal.
                log.warning("lease attempt failed error=%s", error or type(error).__name__)
                held = False
            now = self.clock()
            if held:
                last_renewal = now
                if not leading.is_set():
                    log.info("became leader lease=%s/%s", self.namespace, self.name)
                    metrics.LEADER.set(1)
                    leading.set()
            elif leading.is_set() and now - last_renewal > self.renew_deadline:
                self._renewed_at = None
                log.error("lost leadership lease=%s/%s", self.namespace, self.name)
                metrics.LEADER.set(0)
                lost.set()
                return
            await asyncio.sleep(self.retry_period)
