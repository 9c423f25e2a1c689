"""Events leave from threads of their own, as client-go's recorder sends them.

A reconcile queues its Events and goes on: creating a BackgroundJob's child no
longer waits for a POST that tells a human about it. The queue is bounded; when
the API server cannot keep up, an Event is dropped with a log line (an Event is
worth a log line, never a retry). Each one is still a fenced write: a replica
that lost its Lease, or is stopping, sends none.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from bgjob.api.names import Body
from bgjob.kube import ApiError, Kube

log = logging.getLogger("bgjob.events")

MAX_PENDING = 1000
# Threads sending: one POST at a time each, so a slow API server (50 ms an Event)
# still takes 30 new BackgroundJobs a second. An object's Events always go through
# the same thread, in the order they were recorded.
SENDERS = 4

Item = tuple[Body, str, str, str]


class EventSender:
    """Sends core/v1 Events in the background, each object's in the order recorded."""

    def __init__(self, kube: Kube, max_pending: int = MAX_PENDING, senders: int = SENDERS) -> None:
        self.kube = kube
        self._queues: list[queue.Queue[Item | None]] = [
            queue.Queue(max(1, max_pending // senders)) for _ in range(senders)
        ]
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.dropped = 0

    def start(self) -> None:
        """Start the sending threads (once; the first ``send`` starts them too)."""
        with self._lock:
            if not self._threads:
                for i, pending in enumerate(self._queues):
                    thread = threading.Thread(
                        target=self._run, args=(pending,), name=f"events-{i}", daemon=True
                    )
                    thread.start()
                    self._threads.append(thread)

    def send(self, involved: Body, kind: str, reason: str, message: str) -> None:
        """Queue one Event; never blocks (a full queue drops it)."""
        if not self._threads:
            self.start()
        meta = involved.get("metadata") or {}
        shard = hash((meta.get("namespace"), meta.get("name"))) % len(self._queues)
        try:
            self._queues[shard].put_nowait((involved, kind, reason, message))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:  # a line, not a flood
                log.warning(
                    "events dropped: the API server is not keeping up reason=%s dropped=%d",
                    reason,
                    self.dropped,
                )

    def _run(self, pending: queue.Queue[Item | None]) -> None:
        while True:
            item = pending.get()
            if item is None:
                return
            self.deliver(*item)

    def deliver(self, involved: Body, kind: str, reason: str, message: str) -> None:
        """Send one Event now; a failure is logged, not retried."""
        try:
            self.kube.event(involved, kind, reason, message)
        except ApiError as error:
            log.warning("event not recorded reason=%s error=%s", reason, error)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop: the Events being sent finish, those still queued are dropped (the
        process is going; its writes are over)."""
        unsent = 0
        for pending in self._queues:
            while True:
                try:
                    unsent += pending.get_nowait() is not None
                except queue.Empty:
                    break
        if unsent:
            log.info("events not sent: stopping count=%d", unsent)
        for pending in self._queues:
            pending.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
