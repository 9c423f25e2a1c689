"""A rate-limited work queue of BackgroundJob keys, in the shape controller-runtime uses.

A key is never reconciled by two workers at once; a key added while it is being
reconciled runs once more afterwards; many adds of a waiting key coalesce into
one reconcile; ``add_after`` schedules a wake-up (a once-run's due time, a retry
with backoff) without a timer per object.

Fair: ready keys wait per namespace, and workers take namespaces in turn (round
robin), so one namespace with thousands of changing objects delays another's
next reconcile by at most one reconcile per busy namespace, not by its backlog.

Measured as controller-runtime measures its queues (bgjob.metrics.QueueMetrics):
adds, depth, time waiting, time handled, retries and the work in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from bgjob import metrics

Key = TypeVar("Key", bound=Hashable)


def namespace_of(key: Any) -> Hashable:
    """The fairness shard of a key: the namespace of a (namespace, name) key."""
    return key[0] if isinstance(key, tuple) and key else None


class WorkQueue(Generic[Key]):
    """Deduplicating, per-namespace fair queue with delayed adds and per-key backoff."""

    def __init__(
        self,
        base_delay: float = 0.5,
        max_delay: float = 300.0,
        shard: Callable[[Key], Hashable] = namespace_of,
        name: str = "backgroundjob",
    ) -> None:
        self._shard = shard
        self.metrics = metrics.QueueMetrics(name)
        self._ready: dict[Hashable, deque[Key]] = {}  # ready keys, per shard, FIFO
        self._turns: deque[Hashable] = deque()  # shards with ready keys, in turn order
        self._available = asyncio.Semaphore(0)  # one per ready key
        self._queued: set[Key] = set()
        self._running: set[Key] = set()
        self._again: set[Key] = set()
        self._delayed: list[tuple[float, int, Key]] = []
        self._due_at: dict[Key, float] = {}  # each key's earliest pending wake-up
        self._tie = itertools.count()
        self._wake = asyncio.Event()
        self._failures: dict[Key, int] = {}
        self.base_delay = base_delay
        self.max_delay = max_delay

    def add(self, key: Key) -> None:
        """Reconcile ``key`` as soon as a worker is free."""
        if key in self._queued or key in self._again:
            return  # already pending: coalesced, and not counted (as client-go counts)
        self.metrics.added(key)
        if key in self._running:
            self._again.add(key)
        else:
            self._push(key)

    def _push(self, key: Key) -> None:
        self._queued.add(key)
        shard = self._shard(key)
        waiting = self._ready.get(shard)
        if waiting is None:
            waiting = self._ready[shard] = deque()
            self._turns.append(shard)
        waiting.append(key)
        self._available.release()

    def add_after(self, key: Key, delay: float) -> None:
        """Reconcile ``key`` after ``delay`` seconds."""
        if delay <= 0:
            self.add(key)
            return
        when = time.monotonic() + delay
        pending = self._due_at.get(key)
        if pending is not None and pending <= when:
            return  # An earlier wake-up is already set; that reconcile sets the next one.
        self._due_at[key] = when
        heapq.heappush(self._delayed, (when, next(self._tie), key))
        self._wake.set()

    def retry(self, key: Key, at_least: float | None = None) -> float:
        """Schedule ``key`` again with exponential backoff; returns the delay.

        ``at_least``: what the server asked for (a 429's Retry-After), if longer.
        """
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        self.metrics.retried()
        # The exponent is capped: 2.0**1024 overflows, and the delay is capped anyway.
        delay = min(self.base_delay * 2.0 ** min(failures, 30), self.max_delay)
        if at_least is not None:
            delay = max(delay, at_least)
        self.add_after(key, delay)
        return delay

    def failures(self, key: Key) -> int:
        """How many times in a row ``key`` failed (retries since the last success)."""
        return self._failures.get(key, 0)

    def forget(self, key: Key) -> None:
        """Reset the backoff of ``key`` after a success."""
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def unfinished(self) -> int:
        """Keys waiting or being reconciled now (delayed wake-ups not counted)."""
        return len(self._queued | self._running | self._again)

    def _take(self) -> Key:
        shard = self._turns.popleft()
        waiting = self._ready[shard]
        key = waiting.popleft()
        if waiting:
            self._turns.append(shard)  # its next key waits for the other shards' turn
        else:
            del self._ready[shard]
        return key

    async def run_delayed(self) -> None:
        """Move delayed keys to the ready queue when they fall due. Runs forever."""
        while True:
            now = time.monotonic()
            while self._delayed and self._delayed[0][0] <= now:
                when, _, key = heapq.heappop(self._delayed)
                if self._due_at.get(key) != when:
                    continue  # Superseded by an earlier wake-up that already fired.
                del self._due_at[key]
                self.add(key)
            timeout = self._delayed[0][0] - now if self._delayed else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def run_worker(self, handle: Callable[[Key], Awaitable[None]]) -> None:
        """Take keys one at a time and hand them to ``handle``. Runs forever."""
        while True:
            await self._available.acquire()
            key = self._take()
            self._queued.discard(key)
            self._running.add(key)
            self.metrics.taken(key)
            try:
                await handle(key)
            finally:
                self._running.discard(key)
                self.metrics.done(key)
                if key in self._again:
                    self._again.discard(key)
                    self._push(key)  # counted when it was added
