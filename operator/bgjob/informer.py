"""A lean informer: LIST, then WATCH from the list's resourceVersion, in raw JSON.

One informer per kind and scope (all namespaces, or one namespace in namespaced
mode), each in its own thread, since the official client blocks:

- LIST in pages (``limit``/``continue``); the cache for that kind and scope then
  becomes exactly what the list returned (``replace``), and the keys of everything
  that appeared, changed or vanished are queued. That is what makes a relist after
  a lost watch heal: objects deleted during the gap go, changed ones are seen.
- WATCH from the list's resourceVersion with bookmarks, a server timeout (jittered)
  and a client timeout a little longer; events are decoded line by line, never
  through the official client's models. A watch the server ends on time is resumed
  from the last resourceVersion seen (bookmarks keep it fresh).
- 410 Gone (an expired resourceVersion), an ERROR event, a dropped connection or
  any other failure: LIST again, with exponential backoff (jittered) when it keeps
  failing.

kopf stays for login, start-up and clean-up, the health endpoint and signals; it
no longer watches anything.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bgjob import metrics
from bgjob.api.models import KIND
from bgjob.api.names import Body
from bgjob.kube import RESOURCES, ApiError, Kube, WatchStream
from bgjob.store import Key, Store, key_of, trim

log = logging.getLogger("bgjob.informer")

PAGE_SIZE = 500


class Expired(Exception):
    """The watch's resourceVersion is gone (410): only a new LIST can continue."""


class Sink(Protocol):
    """Where an informer's state goes."""

    def trim(self, body: Body) -> Body:
        """The part of one listed object the sink keeps (applied page by page)."""

    def replace(self, bodies: list[Body]) -> None:
        """The whole scope, as one LIST returned it, each body already ``trim``-med."""

    def event(self, kind: str, body: Body) -> None:
        """One watch event: ADDED, MODIFIED or DELETED."""


def backoff_delay(failures: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter in its upper half: [d/2, d], d capped."""
    delay = min(base * 2.0 ** min(failures, 20), cap)
    return delay / 2 + random.random() * delay / 2


@dataclass
class Informer:
    """Keeps a Sink equal to one kind in one scope (``namespace`` None: all)."""

    kube: Kube
    kind: str
    namespace: str | None
    sink: Sink
    label_selector: str | None = None
    # The server ends each watch after a random time in this range (client-go's way
    # of spreading relists); the client's read timeout is a little longer.
    watch_seconds: tuple[int, int] = (240, 300)
    page_size: int = PAGE_SIZE
    # Short enough that the cache catches up soon after an API server outage ends.
    backoff_cap: float = 10.0
    synced: threading.Event = field(default_factory=threading.Event)
    # True while a watch is open on a state the cache holds (no gap); False otherwise.
    live: bool = False
    lists: int = 0  # LISTs completed (the first one plus relists)
    _stop: threading.Event = field(default_factory=threading.Event)
    _stream: WatchStream | None = None
    _thread: threading.Thread | None = None

    @property
    def scope(self) -> str:
        return f"{self.kind}/{self.namespace or '*'}"

    def start(self) -> None:
        """Run in a daemon thread (it never holds the process up at exit)."""
        self._thread = threading.Thread(target=self.run, name=f"informer-{self.scope}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop at once: the current watch is shut down from this thread."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """LIST, WATCH, repeat; until stopped."""
        version: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self.relist()
                    failures = 0
                version = self.watch(version)
            except Expired:
                self.live = False
                version = None
                metrics.WATCH_RESTARTS.labels(kind=self.kind, reason="expired").inc()
                log.info("watch expired scope=%s: listing again", self.scope)
                # The first one is normal (compaction); relist at once, then back off.
                if failures:
                    self._stop.wait(backoff_delay(failures, cap=self.backoff_cap))
                failures += 1
            except Exception as error:  # Anything else: relist after a backoff.
                self.live = False
                version = None
                if self._stop.is_set():
                    return
                delay = backoff_delay(failures, cap=self.backoff_cap)
                if isinstance(error, ApiError) and error.retry_after:
                    delay = max(delay, error.retry_after)
                failures += 1
                metrics.WATCH_RESTARTS.labels(kind=self.kind, reason="error").inc()
                log.warning(
                    "watch failed scope=%s retry_in=%.1fs error=%s",
                    self.scope,
                    delay,
                    error or type(error).__name__,
                )
                self._stop.wait(delay)
        self.live = False

    def relist(self) -> str:
        """LIST the scope page by page; replace the sink's state; the list's version."""
        started = time.monotonic()
        items: list[Body] = []
        token: str | None = None
        version = ""
        while True:
            try:
                page = self.kube.list_page(
                    self.kind,
                    self.namespace,
                    label_selector=self.label_selector,
                    limit=self.page_size,
                    token=token,
                )
            except ApiError as error:
                if error.status == 410 and token is not None:
                    # The continue token expired mid-list: start over, consistently.
                    log.info("list continue expired scope=%s: listing again", self.scope)
                    items, token = [], None
                    continue
                raise
            # Trimmed as each page arrives: a relist never holds the untrimmed list.
            items.extend(self.sink.trim(item) for item in page.get("items") or [])
            meta = page.get("metadata") or {}
            del page
            version = str(meta.get("resourceVersion") or version)
            token = meta.get("continue") or None
            if token is None:
                break
            if self._stop.is_set():
                raise InterruptedError("stopped")
        self.sink.replace(items)
        self.lists += 1
        self.synced.set()
        log.debug(
            "listed scope=%s items=%d version=%s seconds=%.2f",
            self.scope,
            len(items),
            version,
            time.monotonic() - started,
        )
        return version

    def watch(self, version: str) -> str:
        """Follow one watch from ``version`` to its end; the last version seen."""
        low, high = self.watch_seconds
        try:
            stream = self.kube.watch(
                self.kind,
                self.namespace,
                resource_version=version,
                label_selector=self.label_selector,
                timeout_seconds=random.randint(low, high),
            )
        except ApiError as error:
            if error.status == 410:
                raise Expired(error.message) from None
            raise
        self._stream = stream
        try:
            if self._stop.is_set():
                return version
            self.live = True
            for event in stream:
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    code = obj.get("code")
                    if code == 410:
                        raise Expired(str(obj.get("message") or "expired"))
                    raise ApiError(int(code or 0), str(obj.get("reason")), str(obj.get("message")))
                meta = obj.get("metadata") or {}
                if meta.get("resourceVersion"):
                    version = str(meta["resourceVersion"])
                if kind == "BOOKMARK":
                    continue
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.sink.event(kind, obj)
        except ApiError as error:
            if error.status == 410:
                raise Expired(error.message) from None
            raise
        finally:
            self._stream = None
            stream.close()
        return version


class BackgroundJobSink:
    """BackgroundJob events into the store; their keys into the queue."""

    def __init__(
        self, store: Store, enqueue: Callable[[Iterable[Key]], None], namespace: str | None
    ) -> None:
        self.store = store
        self.enqueue = enqueue
        self.namespace = namespace

    def trim(self, body: Body) -> Body:
        return trim(body, KIND)

    def replace(self, bodies: list[Body]) -> None:
        changed = self.store.replace_bgjobs(bodies, self.namespace, trimmed=True)
        if changed:
            self.enqueue(changed)

    def event(self, kind: str, body: Body) -> None:
        key = key_of(body)
        if kind == "DELETED":
            self.store.drop_bgjob(key)  # reconcile then finds nothing and untracks it
        elif self.store.update_bgjob({**body, "kind": KIND}) is None:
            return  # our own write's echo: the reconcile that wrote it saw this state
        self.enqueue((key,))


class ChildSink:
    """One kind of children into the store; their owners' keys into the queue."""

    def __init__(
        self,
        store: Store,
        enqueue: Callable[[Iterable[Key]], None],
        kind: str,
        namespace: str | None,
    ) -> None:
        self.store = store
        self.enqueue = enqueue
        self.kind = kind
        self.api_version = RESOURCES[kind][0]
        self.namespace = namespace

    def trim(self, body: Body) -> Body:
        return trim(body, self.kind, self.api_version)

    def replace(self, bodies: list[Body]) -> None:
        changed = self.store.replace_children(
            bodies, self.kind, self.api_version, self.namespace, trimmed=True
        )
        if changed:
            self.enqueue(changed)

    def event(self, kind: str, body: Body) -> None:
        if kind == "DELETED":
            owner = self.store.drop_child(body, self.kind)
        else:
            new, owner = self.store.update_child(body, self.kind, self.api_version)
            if not new:
                return  # our own write's echo: the reconcile that wrote it saw this state
        if owner is not None:
            self.enqueue((owner,))


def owner_exists(kube: Kube, store: Store, key: Key, uid: str, *, fresh: bool) -> bool:
    """Whether the BackgroundJob ``key`` still exists with ``uid``.

    The cache answers first (free); a cache that says yes is confirmed with one GET
    when ``fresh`` (about to create a child: the cache may be in a watch gap).
    """
    if store.bgjob_uid(key) != uid:
        return False
    if not fresh:
        return True
    live: dict[str, Any] | None = kube.get(KIND, *key)
    return live is not None and (live.get("metadata") or {}).get("uid") == uid
