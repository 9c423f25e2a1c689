"""Events leave from a thread of their own, as client-go's recorder sends them.

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

from bgjob.api.names import Body
from bgjob.kube import ApiError, Kube

log = logging.getLogger("bgjob.events")

MAX_PENDING = 1000


class EventSender:
    """Sends core/v1 Events in the background, in the order they were recorded."""

    def __init__(self, kube: Kube, max_pending: int = MAX_PENDING) -> None:
        self.kube = kube
        self._queue: queue.Queue[tuple[Body, str, str, str] | None] = queue.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0

    def start(self) -> None:
        """Start the sending thread (once; the first ``send`` starts it too)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="events", daemon=True)
                self._thread.start()

    def send(self, involved: Body, kind: str, reason: str, message: str) -> None:
        """Queue one Event; never blocks (a full queue drops it)."""
        if self._thread is None:
            self.start()
        try:
            self._queue.put_nowait((involved, kind, reason, message))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:  # a line, not a flood
                log.warning(
                    "events dropped: the API server is not keeping up reason=%s dropped=%d",
                    reason,
                    self.dropped,
                )

    def _run(self) -> None:
        while True:
            item = self._queue.get()
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
        """Stop: the Event being sent finishes, those still queued are dropped (the
        process is going; its writes are over)."""
        unsent = 0
        while True:
            try:
                unsent += self._queue.get_nowait() is not None
            except queue.Empty:
                break
        if unsent:
            log.info("events not sent: stopping count=%d", unsent)
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
