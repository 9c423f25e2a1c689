"""One loop scales every queue-triggered BackgroundJob.

Each BackgroundJob is a target with its own polling interval, kept in a heap by
due time. Targets that read the same queue on the same broker share one probe
call per round, however many there are. When a target's decision changes (or
its backlog has not reached status for a while, or the broker's health
changed), the loop queues that BackgroundJob for reconcile, which applies the
replicas and writes status: the scaler itself never writes to the API server.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bgjob import metrics
from bgjob.api.models import BackgroundJob, QueueTrigger
from bgjob.kube import ApiError, Kube
from bgjob.scaling.decision import History, Limits, desired_replicas
from bgjob.scaling.probes import Probe, ProbeError, QueueRef, RabbitMQProbe, RedisProbe
from bgjob.status import Problem
from bgjob.store import Key

log = logging.getLogger("bgjob.scaler")

SECRET_TTL_SECONDS = 30.0
MISSING_SECRET_TTL_SECONDS = 5.0
# Backlog changes reach status at most this often unless replicas change too.
STATUS_EVERY_SECONDS = 5.0
TICK_SECONDS = 0.5


@dataclass(frozen=True)
class Source:
    """Where a target's queue is: a literal URL, or a Secret key holding it."""

    backend: str
    name: str
    url: str | None
    secret: tuple[str, str, str] | None  # (namespace, name, key)
    management_url: str | None = None


@dataclass
class Target:
    """One queue-triggered BackgroundJob as the scaler sees it."""

    key: Key
    source: Source
    limits: Limits
    interval: float
    # (uid, generation) of the spec it was built from: a re-created object is new.
    version: tuple[str, int]
    history: History = field(default_factory=History)
    next_poll: float = 0.0
    replicas: int | None = None
    backlog: int | None = None
    problem: Problem | None = None
    reported_backlog: int | None = None
    reported_at: float = 0.0


@dataclass(frozen=True)
class View:
    """What reconcile needs from the scaler for one BackgroundJob."""

    replicas: int | None
    backlog: int | None
    problem: Problem | None


def next_tick(now: float, interval: float) -> float:
    """The next multiple of ``interval``: targets with one interval poll in the same round,
    so those reading the same queue share one probe call."""
    return (math.floor(now / interval) + 1) * interval


def source_of(bgj: BackgroundJob) -> Source:
    """The queue a BackgroundJob reads."""
    queue = bgj.spec.trigger.queue
    assert queue is not None
    backend = queue.redis or queue.rabbitmq
    assert backend is not None
    name = queue.redis.list if queue.redis else queue.rabbitmq.queue  # type: ignore[union-attr]
    secret = None
    if backend.url_from is not None:
        ref = backend.url_from.secret_key_ref
        secret = (bgj.metadata.namespace, ref.name, ref.key)
    return Source(
        backend="redis" if queue.redis else "rabbitmq",
        name=name,
        url=backend.url,
        secret=secret,
        management_url=queue.rabbitmq.management_url if queue.rabbitmq else None,
    )


def limits_of(bgj: BackgroundJob) -> Limits:
    """The decision's bounds from the spec; singleton caps at one."""
    queue: QueueTrigger | None = bgj.spec.trigger.queue
    assert queue is not None
    most = 1 if bgj.spec.singleton else bgj.spec.concurrency
    return Limits(
        min_replicas=min(queue.min_replicas, most),
        max_replicas=most,
        target_per_replica=queue.target_per_replica,
        activation_threshold=queue.activation_threshold,
        cooldown_seconds=float(queue.cooldown_seconds),
    )


class Scaler:
    """Polls queues and decides replicas for every tracked BackgroundJob."""

    def __init__(
        self,
        kube: Kube,
        enqueue: Callable[[Key], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.enqueue = enqueue
        self.clock = clock
        self.probes: dict[str, Probe] = {"redis": RedisProbe(), "rabbitmq": RabbitMQProbe()}
        self._targets: dict[Key, Target] = {}
        self._due: list[tuple[float, Key]] = []
        self._secrets: dict[tuple[str, str], tuple[float, dict[str, str] | None]] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(4, thread_name_prefix="probe")

    # --- called by reconcile (worker threads) -----------------------------------------

    def track(self, bgj: BackgroundJob, current_replicas: int | None) -> None:
        """Start or update scaling one BackgroundJob; ``current_replicas`` seeds it."""
        key = (bgj.metadata.namespace, bgj.metadata.name)
        queue = bgj.spec.trigger.queue
        assert queue is not None
        source, limits = source_of(bgj), limits_of(bgj)
        with self._lock:
            target = self._targets.get(key)
            version = (bgj.metadata.uid, bgj.metadata.generation)
            if target is not None and target.version == version:
                return
            if target is not None and target.version[0] != bgj.metadata.uid:
                target = None  # Deleted and created again: start afresh.
            if target is None:
                target = Target(key, source, limits, queue.polling_interval_seconds, ("", 0))
                if current_replicas is not None:
                    # Scale down from what runs now only after a full cooldown.
                    target.replicas = current_replicas
                    target.history.remember(self.clock(), current_replicas, limits.cooldown_seconds)
                self._targets[key] = target
                target.next_poll = self.clock()
                heapq.heappush(self._due, (target.next_poll, key))
            elif target.source != source:
                target.backlog, target.problem = None, None
            target.source, target.limits = source, limits
            target.interval = float(queue.polling_interval_seconds)
            target.version = version

    def untrack(self, key: Key) -> None:
        """Stop scaling a BackgroundJob (deleted, suspended, or no longer a queue)."""
        with self._lock:
            self._targets.pop(key, None)

    def view(self, key: Key) -> View | None:
        """The latest decision, backlog and problem of one BackgroundJob."""
        with self._lock:
            target = self._targets.get(key)
            if target is None:
                return None
            return View(target.replicas, target.backlog, target.problem)

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll due targets, one probe per distinct queue, forever."""
        loop = asyncio.get_running_loop()
        while True:
            due = self._take_due()
            if due:
                try:
                    await self._poll(loop, due)
                except Exception:  # One bad round must not stop scaling for everyone.
                    log.exception("scaling round failed targets=%d", len(due))
            await asyncio.sleep(self._sleep_time())

    def _take_due(self) -> list[Target]:
        now = self.clock()
        due: list[Target] = []
        with self._lock:
            while self._due and self._due[0][0] <= now:
                when, key = heapq.heappop(self._due)
                target = self._targets.get(key)
                if target is None or target.next_poll != when:
                    continue  # untracked, or re-tracked with a fresh entry
                due.append(target)
                target.next_poll = next_tick(now, target.interval)
                heapq.heappush(self._due, (target.next_poll, key))
        return due

    def _sleep_time(self) -> float:
        with self._lock:
            if not self._due:
                return TICK_SECONDS
            return max(0.01, min(TICK_SECONDS, self._due[0][0] - self.clock()))

    async def _poll(self, loop: asyncio.AbstractEventLoop, due: list[Target]) -> None:
        refs: dict[Key, QueueRef | Problem] = {}
        for target in due:
            refs[target.key] = await loop.run_in_executor(self._executor, self._resolve, target)
        distinct = {ref for ref in refs.values() if isinstance(ref, QueueRef)}
        results = await asyncio.gather(
            *(loop.run_in_executor(self._executor, self._probe, ref) for ref in distinct)
        )
        backlogs: dict[QueueRef, int | ProbeError] = dict(zip(distinct, results, strict=True))
        for target in due:
            ref = refs[target.key]
            if isinstance(ref, Problem):
                self._update(target, None, ref)
                continue
            outcome = backlogs[ref]
            if isinstance(outcome, ProbeError):
                self._update(target, None, Problem("QueueUnreachable", str(outcome), stalled=False))
            else:
                self._update(target, outcome, None)

    def _probe(self, ref: QueueRef) -> int | ProbeError:
        try:
            backlog = self.probes[ref.backend].backlog(ref)
        except ProbeError as error:
            metrics.QUEUE_PROBES.labels(backend=ref.backend, result="error").inc()
            return error
        except Exception as error:  # A URL the client cannot use, and the like.
            metrics.QUEUE_PROBES.labels(backend=ref.backend, result="error").inc()
            return ProbeError(f"{ref}: {type(error).__name__}")
        metrics.QUEUE_PROBES.labels(backend=ref.backend, result="ok").inc()
        return backlog

    def _resolve(self, target: Target) -> QueueRef | Problem:
        source = target.source
        if source.url is not None:
            return QueueRef(source.backend, source.url, source.name, source.management_url)
        assert source.secret is not None
        namespace, name, key = source.secret
        try:
            data = self._secret(namespace, name)
        except ApiError as error:
            return Problem("SecretUnreadable", f"Secret {name}: {error.reason}", stalled=False)
        if data is None:
            return Problem("SecretNotFound", f"Secret {name} (urlFrom.secretKeyRef) does not exist")
        if key not in data:
            return Problem("SecretKeyNotFound", f"Secret {name} has no key {key!r}")
        try:
            url = base64.b64decode(data[key]).decode().strip()
        except ValueError:
            return Problem("SecretKeyInvalid", f"Secret {name} key {key!r} is not a UTF-8 URL")
        return QueueRef(source.backend, url, source.name, source.management_url)

    def _secret(self, namespace: str, name: str) -> dict[str, str] | None:
        now = self.clock()
        cached = self._secrets.get((namespace, name))
        if cached is not None:
            # A missing Secret is looked for again soon: the user is about to create it.
            ttl = SECRET_TTL_SECONDS if cached[1] is not None else MISSING_SECRET_TTL_SECONDS
            if now - cached[0] < ttl:
                return cached[1]
        body = self.kube.get("Secret", namespace, name)
        # Kept base64-encoded: only the referenced key is ever decoded.
        data = None if body is None else dict(body.get("data") or {})
        self._secrets[(namespace, name)] = (now, data)
        return data

    def _update(self, target: Target, backlog: int | None, problem: Problem | None) -> None:
        now = self.clock()
        with self._lock:
            current = target.replicas if target.replicas is not None else target.limits.min_replicas
            replicas = desired_replicas(backlog, current, target.limits, target.history, now)
            changed = replicas != target.replicas or problem != target.problem
            stale = (
                backlog is not None
                and backlog != target.reported_backlog
                and (now - target.reported_at >= STATUS_EVERY_SECONDS)
            )
            target.replicas, target.problem = replicas, problem
            if backlog is not None:
                target.backlog = backlog
            if changed or stale:
                target.reported_backlog, target.reported_at = target.backlog, now
        if changed or stale:
            self.enqueue(target.key)

    def close(self) -> None:
        """Close broker connections."""
        for probe in self.probes.values():
            probe.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
