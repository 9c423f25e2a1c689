"""One loop scales every queue-triggered BackgroundJob.

Each BackgroundJob is a target with its own polling interval, kept in a heap by
due time. Each due target is polled by its own task with its own deadline
(tied to its polling interval), so a broker that never answers delays nobody
else: targets that read the same queue on the same broker share one probe call
in flight, a probe still running when its readers' deadlines pass is left to
finish in its thread (its result is shared by the next round's readers, or
dropped), and a failing queue is probed less often. Secrets are read in
parallel, each with a deadline, and only the referenced key is kept.

When a target's decision changes (or its backlog has not reached status for a
while, or the broker's health changed), the loop queues that BackgroundJob for
reconcile, which applies the replicas and writes status: the scaler itself
never writes to the API server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import heapq
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bgjob import metrics
from bgjob.api import urls
from bgjob.api.models import NAMES_BUSY_WORKERS, WORK_AWARE, BackgroundJob, QueueTrigger
from bgjob.kube import ApiError, Kube, path
from bgjob.scaling import network
from bgjob.scaling.decision import (
    Activity,
    History,
    Limits,
    desired_replicas,
    desired_work_replicas,
    due_soon,
    next_wake,
)
from bgjob.scaling.network import NetworkPolicy, default_policy
from bgjob.scaling.probes import (
    CeleryProbe,
    Probe,
    ProbeError,
    QueueRef,
    RabbitMQProbe,
    RedisProbe,
    RQProbe,
    Work,
    workers_to_read,
)
from bgjob.scaling.scale_in import busy_floor
from bgjob.status import Problem
from bgjob.store import Key
from bgjob.workloads.services import replica_bounds

log = logging.getLogger("bgjob.scaler")

SECRET_TTL_SECONDS = 30.0
# A missing Secret, or one whose broker refused us, is read again this soon.
MISSING_SECRET_TTL_SECONDS = 5.0
SECRET_DEADLINE_SECONDS = 5.0
# A broker that refuses us may have a new password: its Secret is read again, at most this
# often (a rotated Secret is picked up within seconds, a dead broker costs few reads).
REFRESH_ON_FAILURE_SECONDS = 2.0
SECRET_REQUEST_TIMEOUT = (2.0, 5.0)
# Backlog changes reach status at most this often unless replicas change too.
STATUS_EVERY_SECONDS = 5.0
TICK_SECONDS = 0.5
PROBE_THREADS = 32
# Probe threads one namespace may hold at once, counted until each thread has really
# finished (a late probe holds its share until then): black holes in one namespace
# exhaust only this share, the other namespaces keep polling on time.
PROBE_THREADS_PER_NAMESPACE = 8
# A queue that keeps failing is probed at most this rarely (and at least every interval).
BACKOFF_MAX_SECONDS = 5.0
# Deadlines missed in a row before a target is reported unreachable (one late answer
# on a busy machine is not an outage).
LATE_ROUNDS_TO_REPORT = 2


def rfc3339(wall: float) -> str:
    """A wall time as status shows times, to the second."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wake_gap(interval: float) -> float:
    """The least time between two polls of one target, when a scheduled job wakes it."""
    return max(2.0, float(interval) / 4)


def deadline_of(interval: float) -> float:
    """A probe's hard deadline: its polling interval, within [1 s, 10 s]."""
    return min(max(float(interval), 1.0), 10.0)


@dataclass(frozen=True)
class Source:
    """Where a target's queue is: a literal URL, or a Secret key holding it."""

    backend: str
    name: str
    url: str | None
    secret: tuple[str, str, str] | None  # (namespace, name, key)
    management_url: str | None = None
    allow_insecure_management: bool = False
    # rq: start workers this long before a scheduled job is due.
    schedule_lead: float = 0.0


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
    activity: Activity = field(default_factory=Activity)
    busy: frozenset[str] = frozenset()  # work-aware backends: workers busy with a job
    note: str | None = None  # what the last read could not tell exactly
    last_activity: str | None = None  # wall time (RFC 3339) of the last job start/finish
    # The pool's own pod names, as the reconciler last listed them: only a busy worker
    # that is one of them holds a replica up.
    pods: frozenset[str] = frozenset()
    next_poll: float = 0.0
    replicas: int | None = None
    backlog: int | None = None
    problem: Problem | None = None
    # (backlog, busy workers, last activity) last sent to status.
    reported: tuple[int | None, frozenset[str], str | None] = (None, frozenset(), None)
    reported_at: float = 0.0
    polling: bool = False  # a poll task for it is running
    late_rounds: int = 0
    url_in_use: tuple[str, str] | None = None  # (backend, URL) it holds a pooled client by
    # The probe it last started or joined: while that runs, it starts no other.
    probe: asyncio.Future[int | Work | ProbeError] | None = None


@dataclass(frozen=True)
class View:
    """What reconcile needs from the scaler for one BackgroundJob."""

    replicas: int | None
    backlog: int | None
    problem: Problem | None
    # Pods (worker hostnames) busy with a job: scale-in removes them last. None when the
    # backend does not know (redis, rabbitmq) or the last read failed.
    busy: frozenset[str] | None = None
    # What the backlog could not tell exactly (it counts more, never less).
    note: str | None = None
    # Work-aware: when a job last started or finished (RFC 3339), the cooldown's start.
    last_activity: str | None = None


class ThreadGate:
    """Probe threads in flight: at most ``total``, at most ``per_namespace`` for one
    namespace. When threads are scarce, a freed one goes to the waiting namespace that
    holds the fewest (first come first served among equals). Used on the event loop only."""

    def __init__(self, total: int, per_namespace: int) -> None:
        self.total, self.per_namespace = total, per_namespace
        self.busy: dict[str, int] = {}
        self._waiting: list[tuple[str, asyncio.Future[None]]] = []

    def in_use(self) -> int:
        return sum(self.busy.values())

    def _free(self, namespace: str) -> bool:
        return self.in_use() < self.total and self.busy.get(namespace, 0) < self.per_namespace

    def _take(self, namespace: str) -> None:
        self.busy[namespace] = self.busy.get(namespace, 0) + 1

    async def acquire(self, namespace: str, timeout: float) -> bool:
        """A thread for ``namespace`` within ``timeout`` seconds; False when none."""
        if self._free(namespace):
            self._take(namespace)
            return True
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (namespace, granted)
        self._waiting.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(granted), max(0.0, timeout))
            return True
        except TimeoutError:
            if granted.done():  # granted just as the time ran out: give it back
                self.release(namespace)
            return False
        finally:
            if entry in self._waiting:
                self._waiting.remove(entry)

    def release(self, namespace: str) -> None:
        left = self.busy.get(namespace, 0) - 1
        if left > 0:
            self.busy[namespace] = left
        else:
            self.busy.pop(namespace, None)
        while True:
            ready = [w for w in self._waiting if not w[1].done() and self._free(w[0])]
            if not ready:
                return
            chosen = min(ready, key=lambda w: self.busy.get(w[0], 0))
            self._waiting.remove(chosen)
            self._take(chosen[0])
            chosen[1].set_result(None)


def next_tick(now: float, interval: float) -> float:
    """The next multiple of ``interval``: targets with one interval poll in the same round,
    so those reading the same queue share one probe call."""
    return (math.floor(now / interval) + 1) * interval


def source_of(bgj: BackgroundJob) -> Source:
    """The queue a BackgroundJob reads."""
    queue = bgj.spec.trigger.queue
    assert queue is not None
    backend = queue.broker
    if queue.redis is not None:
        name = queue.redis.list
    elif queue.rabbitmq is not None:
        name = queue.rabbitmq.queue
    elif queue.rq is not None:
        name = ",".join(queue.rq.queues)
    else:
        assert queue.celery is not None
        name = queue.celery.queue
    secret = None
    if backend.url_from is not None:
        ref = backend.url_from.secret_key_ref
        secret = (bgj.metadata.namespace, ref.name, ref.key)
    return Source(
        backend=queue.backend,
        name=name,
        url=backend.url,
        secret=secret,
        management_url=queue.rabbitmq.management_url if queue.rabbitmq else None,
        allow_insecure_management=bool(queue.rabbitmq and queue.rabbitmq.allow_insecure_management),
        schedule_lead=float(queue.rq.schedule_lead_seconds) if queue.rq else 0.0,
    )


def url_backend(backend: str) -> str:
    """The URL grammar a backend's broker URL follows (rq and celery: redis)."""
    return "rabbitmq" if backend == "rabbitmq" else "redis"


def limits_of(bgj: BackgroundJob) -> Limits:
    """The decision's bounds from the spec; singleton caps at one."""
    queue: QueueTrigger | None = bgj.spec.trigger.queue
    assert queue is not None
    fewest, most = replica_bounds(bgj.spec)
    return Limits(
        min_replicas=fewest,
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
        policy: NetworkPolicy | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.enqueue = enqueue
        self.clock = clock
        # Scheduled jobs are due at wall-clock times.
        self.wall = wall
        policy = policy or default_policy()
        self.probes: dict[str, Probe] = {
            "redis": RedisProbe(policy),
            "rabbitmq": RabbitMQProbe(policy),
            "rq": RQProbe(policy),
            "celery": CeleryProbe(policy),
        }
        self._targets: dict[Key, Target] = {}
        self._due: list[tuple[float, Key]] = []
        # (namespace, name, key) -> (read at, the URL or why there is none): one key, not
        # the whole Secret.
        self._secrets: dict[tuple[str, str, str], tuple[float, str | Problem]] = {}
        self._secret_reads: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._inflight: dict[QueueRef, asyncio.Future[int | Work | ProbeError]] = {}
        self._backoff: dict[QueueRef, tuple[float, int, ProbeError]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(PROBE_THREADS, thread_name_prefix="probe")
        self._gate = ThreadGate(PROBE_THREADS, PROBE_THREADS_PER_NAMESPACE)
        self._secret_executor = ThreadPoolExecutor(4, thread_name_prefix="secret")

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
                self._forget(target)  # Deleted and created again: start afresh.
                target = None
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
                # A BackgroundJob that changed brokers keeps no series for the old kind.
                metrics.forget_probe_errors(*key, keep=source.backend)
            target.source, target.limits = source, limits
            target.interval = float(queue.polling_interval_seconds)
            target.version = version

    def untrack(self, key: Key) -> None:
        """Stop scaling a BackgroundJob (deleted, suspended, or no longer a queue): its
        broker client closes if nobody else uses it, its Secret key leaves the cache."""
        if key not in self._targets:
            # Never tracked, or untracked already (and its series forgotten then): most
            # BackgroundJobs are no queue, and every reconcile of one comes here. No
            # track() of the same key runs meanwhile (one reconcile per key at a time).
            return
        with self._lock:
            target = self._targets.pop(key, None)
            if target is not None:
                self._forget(target)
            # Under the lock: a poll landing later finds it untracked and counts nothing.
            metrics.forget_probe_errors(*key)

    def _forget(self, target: Target) -> None:
        """Let go of what a target held (with the lock held)."""
        if target.url_in_use is not None:
            backend, url = target.url_in_use
            self.probes[backend].release(url, target.key)
            target.url_in_use = None
        self._evict_secrets()

    def _evict_secrets(self) -> None:
        referenced = {t.source.secret for t in self._targets.values() if t.source.secret}
        for cached in [k for k in self._secrets if k not in referenced]:
            del self._secrets[cached]

    def note_pods(self, key: Key, pods: frozenset[str]) -> None:
        """The pool's own pod names, listed by the reconciler before a scale-in: the
        decision is taken again at once with them, so the replicas the reconciler reads
        next (``view``) never go below the pool's pods busy with a job."""
        with self._lock:
            target = self._targets.get(key)
            if target is None:
                return
            target.pods = pods
            if (
                target.source.backend in WORK_AWARE
                and target.replicas is not None
                and target.backlog is not None
                and target.problem is None
            ):
                target.replicas = self._work_replicas(
                    target, target.backlog, target.activity.fingerprint, target.replicas
                )

    def _work_replicas(
        self, target: Target, count: int | None, fingerprint: object, current: int
    ) -> int:
        """The work-aware decision (with the lock held): its floor is the pool's own
        pods busy with a job."""
        return desired_work_replicas(
            count,
            busy_floor(target.busy, target.pods, target.limits.max_replicas),
            fingerprint,
            current,
            target.limits,
            target.activity,
            self.clock(),
        )

    def view(self, key: Key) -> View | None:
        """The latest decision, backlog and problem of one BackgroundJob."""
        with self._lock:
            target = self._targets.get(key)
            if target is None:
                return None
            busy = target.busy if target.source.backend in NAMES_BUSY_WORKERS else None
            if target.problem is not None:
                busy = None
            note = target.note if target.problem is None else None
            return View(
                target.replicas, target.backlog, target.problem, busy, note, target.last_activity
            )

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Start a poll for every due target, each on its own, forever."""
        try:
            while True:
                for target in self._take_due():
                    target.polling = True
                    task = asyncio.create_task(self._poll_one(target))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                await asyncio.sleep(self._sleep_time())
        finally:
            for task in list(self._tasks):
                task.cancel()

    def _take_due(self) -> list[Target]:
        now = self.clock()
        due: list[Target] = []
        with self._lock:
            while self._due and self._due[0][0] <= now:
                when, key = heapq.heappop(self._due)
                target = self._targets.get(key)
                if target is None or target.next_poll != when:
                    continue  # untracked, or re-tracked with a fresh entry
                target.next_poll = next_tick(now, target.interval)
                heapq.heappush(self._due, (target.next_poll, key))
                if not target.polling:  # otherwise its last poll is still waiting
                    due.append(target)
        return due

    def _sleep_time(self) -> float:
        with self._lock:
            if not self._due:
                return TICK_SECONDS
            return max(0.01, min(TICK_SECONDS, self._due[0][0] - self.clock()))

    async def _poll_one(self, target: Target) -> None:
        """Resolve, probe and decide for one target, within its own deadlines."""
        try:
            ref = await self._resolve(target)
            if isinstance(ref, Problem):
                self._update(target, None, ref)
                return
            if not self._hold(target, ref.url):
                return  # untracked meanwhile
            outcome = await self._probe_shared(target, ref, deadline_of(target.interval))
            if outcome is None:  # late: the probe may still answer for the next round
                target.late_rounds += 1
                if target.late_rounds < LATE_ROUNDS_TO_REPORT:
                    return
                outcome = ProbeError(f"{ref}: no answer within {deadline_of(target.interval)}s")
            else:
                target.late_rounds = 0
            if isinstance(outcome, ProbeError):
                log.debug("probe failed bgjob=%s/%s %s", *target.key, outcome.detail)
                self._refresh_secret_soon(target)
                problem = Problem(outcome.reason, outcome.public, stalled=outcome.stalled)
                self._update(target, None, problem, probe_failed=True)
            else:
                self._update(target, outcome, None)
        except Exception:  # One bad poll must not stop scaling for anyone.
            log.exception("scaling poll failed bgjob=%s/%s", *target.key)
        finally:
            target.polling = False

    def _hold(self, target: Target, url: str) -> bool:
        """Hold a pooled client reference for the URL the target now reads (and let go of
        the one it read before: a rotated Secret closes the old connection)."""
        with self._lock:
            if self._targets.get(target.key) is not target:
                return False
            using = (target.source.backend, url)
            if target.url_in_use != using:
                self.probes[using[0]].retain(url, target.key)
                if target.url_in_use is not None:
                    backend, old = target.url_in_use
                    self.probes[backend].release(old, target.key)
                target.url_in_use = using
            return True

    async def _probe_shared(
        self, target: Target, ref: QueueRef, deadline: float
    ) -> int | Work | ProbeError | None:
        """The backlog of ``ref`` within ``deadline``: one probe in flight per queue,
        shared by every reader, on a thread of the target's namespace's share; a target
        whose last probe still runs starts no other. None when no answer came in time."""
        started = time.monotonic()
        future = self._inflight.get(ref)
        if future is None:
            if target.probe is not None and not target.probe.done():
                return None  # its last probe (of another URL) still holds a thread
            backoff = self._backoff.get(ref)
            if backoff is not None and self.clock() < backoff[0]:
                return backoff[2]  # failing: probed again when the backoff ends
            namespace = target.key[0]
            if not await self._gate.acquire(namespace, deadline):
                return None  # the namespace's share is in use: late, like a slow broker
            future = self._inflight.get(ref)  # another reader may have started it meanwhile
            if future is not None:
                self._gate.release(namespace)
            else:
                future = self._start_probe(ref, deadline, namespace)
        target.probe = future
        try:
            left = deadline - (time.monotonic() - started)
            return await asyncio.wait_for(asyncio.shield(future), max(0.0, left))
        except TimeoutError:
            return None

    def _start_probe(
        self, ref: QueueRef, deadline: float, namespace: str
    ) -> asyncio.Future[int | Work | ProbeError]:
        """Run a probe on a thread the gate granted ``namespace``; the grant ends when the
        thread (and any DNS lookup it left running) has really finished."""
        loop = asyncio.get_running_loop()

        def finished() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to release
                loop.call_soon_threadsafe(self._gate.release, namespace)

        try:
            running = self._executor.submit(self._probe_then, ref, deadline, finished)
        except BaseException:
            self._gate.release(namespace)
            raise
        future = asyncio.wrap_future(running)
        self._inflight[ref] = future
        future.add_done_callback(lambda done: self._landed(ref, done, deadline))
        return future

    def _probe_then(
        self, ref: QueueRef, deadline: float, finished: Callable[[], None]
    ) -> int | Work | ProbeError:
        with network.lookups_started() as lookups:
            try:
                return self._probe(ref, deadline)
            finally:
                # A DNS lookup that outlived the probe still holds a resolver thread.
                network.after_lookups(lookups, finished)

    def _landed(
        self, ref: QueueRef, done: asyncio.Future[int | Work | ProbeError], every: float
    ) -> None:
        if self._inflight.get(ref) is done:
            del self._inflight[ref]
        if done.cancelled() or done.exception() is not None:
            return
        outcome = done.result()
        if isinstance(outcome, ProbeError) and outcome.reason == "QueueUnreachable":
            failures = self._backoff.get(ref, (0.0, 0, outcome))[1] + 1
            pause = min(BACKOFF_MAX_SECONDS, every * 2 ** (failures - 1))
            self._backoff[ref] = (self.clock() + pause - every, failures, outcome)
        else:
            self._backoff.pop(ref, None)
        if len(self._backoff) > 4 * len(self._targets) + 16:
            self._backoff.clear()  # forget queues nobody reads any more

    def _probe(self, ref: QueueRef, deadline: float) -> int | Work | ProbeError:
        try:
            backlog = self.probes[ref.backend].backlog(ref, deadline)
        except ProbeError as error:
            metrics.QUEUE_PROBES.labels(backend=ref.backend, result="error").inc()
            return error
        except Exception as error:  # A URL the client cannot use, and the like.
            metrics.QUEUE_PROBES.labels(backend=ref.backend, result="error").inc()
            return ProbeError(f"{ref}: {type(error).__name__}")
        metrics.QUEUE_PROBES.labels(backend=ref.backend, result="ok").inc()
        return backlog

    # --- URLs and Secrets -----------------------------------------------------------------

    async def _resolve(self, target: Target) -> QueueRef | Problem:
        source = target.source
        field_name = f"spec.trigger.queue.{source.backend}"
        if source.url is not None:
            url, where = source.url, f"{field_name}.url"
        else:
            assert source.secret is not None
            found = await self._secret_value(*source.secret)
            if isinstance(found, Problem):
                return found
            url = found
            where = f"Secret {source.secret[1]} key {source.secret[2]!r} ({field_name}.urlFrom)"
        problem = urls.broker_problem(url, url_backend(source.backend))
        if problem is not None:
            return Problem("InvalidQueueURL", f"{where}: the URL {problem}")
        return QueueRef(
            source.backend,
            url,
            source.name,
            source.management_url,
            source.allow_insecure_management,
            workers_to_read(target.limits.max_replicas)
            if source.backend in NAMES_BUSY_WORKERS
            else 0,
        )

    async def _secret_value(self, namespace: str, name: str, key: str) -> str | Problem:
        """The referenced key of a Secret: from the cache while fresh; a stale value serves
        while a new read runs; the first read waits at most SECRET_DEADLINE_SECONDS."""
        now = self.clock()
        cached = self._secrets.get((namespace, name, key))
        if cached is not None:
            ttl = SECRET_TTL_SECONDS if isinstance(cached[1], str) else MISSING_SECRET_TTL_SECONDS
            if now - cached[0] < ttl:
                return cached[1]
        read = self._secret_reads.get((namespace, name))
        if read is None:
            read = asyncio.wrap_future(
                self._secret_executor.submit(self._read_secret, namespace, name, key)
            )
            self._secret_reads[(namespace, name)] = read
            read.add_done_callback(lambda _: self._secret_reads.pop((namespace, name), None))
        if cached is not None and isinstance(cached[1], str):
            return cached[1]
        try:
            await asyncio.wait_for(asyncio.shield(read), SECRET_DEADLINE_SECONDS)
        except TimeoutError:
            return Problem(
                "SecretUnreadable", f"Secret {name} could not be read in time", stalled=False
            )
        found = self._secrets.get((namespace, name, key))
        if found is None:
            return Problem("SecretUnreadable", f"Secret {name} could not be read", stalled=False)
        return found[1]

    def _read_secret(self, namespace: str, name: str, wanted: str) -> None:
        """GET one Secret (bounded) and cache the keys tracked targets reference, decoded."""
        now = self.clock()
        try:
            body: dict[str, object] | None = self.kube.request(
                "GET", path("Secret", namespace, name), timeout=SECRET_REQUEST_TIMEOUT
            )
            error: Problem | None = None
        except ApiError as failed:
            body = None
            if failed.status == 404:
                error = Problem(
                    "SecretNotFound", f"Secret {name} (urlFrom.secretKeyRef) does not exist"
                )
            else:
                error = Problem(
                    "SecretUnreadable", f"Secret {name}: {failed.reason}", stalled=False
                )
        data = (body or {}).get("data") or {}
        assert isinstance(data, dict)
        with self._lock:
            keys = {
                t.source.secret[2]
                for t in self._targets.values()
                if t.source.secret is not None and t.source.secret[:2] == (namespace, name)
            } | {wanted}
            for key in keys:
                value: str | Problem
                if error is not None:
                    value = error
                elif key not in data:
                    value = Problem("SecretKeyNotFound", f"Secret {name} has no key {key!r}")
                else:
                    try:
                        value = base64.b64decode(str(data[key])).decode().strip()
                    except ValueError:
                        value = Problem(
                            "SecretKeyInvalid", f"Secret {name} key {key!r} is not a UTF-8 URL"
                        )
                self._secrets[(namespace, name, key)] = (now, value)

    def _refresh_secret_soon(self, target: Target) -> None:
        """The broker refused or did not answer: maybe its Secret changed. Read it again
        at the next poll, at most every REFRESH_ON_FAILURE_SECONDS."""
        secret = target.source.secret
        if secret is None:
            return
        cached = self._secrets.get(secret)
        if cached is not None and self.clock() - cached[0] >= REFRESH_ON_FAILURE_SECONDS:
            self._secrets[secret] = (cached[0] - SECRET_TTL_SECONDS, cached[1])

    # --- the decision ---------------------------------------------------------------------

    def _update(
        self,
        target: Target,
        backlog: int | Work | None,
        problem: Problem | None,
        probe_failed: bool = False,
    ) -> None:
        now = self.clock()
        wake: float | None = None
        with self._lock:
            if self._targets.get(target.key) is not target:
                return  # untracked while its poll ran
            if probe_failed:  # once per target and round, however many share the queue
                metrics.probe_failed(*target.key, target.source.backend)
            current = target.replicas if target.replicas is not None else target.limits.min_replicas
            if target.source.backend in WORK_AWARE:
                count, wake = self._work_backlog(target, backlog)
                fingerprint = backlog.activity if isinstance(backlog, Work) else None
                seen = target.activity.last_change
                replicas = self._work_replicas(target, count, fingerprint, current)
                if target.activity.last_change != seen:
                    target.last_activity = rfc3339(self.wall())
            else:
                count = backlog.backlog if isinstance(backlog, Work) else backlog
                replicas = desired_replicas(count, current, target.limits, target.history, now)
            changed = replicas != target.replicas or problem != target.problem
            shown = (count, target.busy, target.last_activity)
            stale = (
                count is not None
                and shown != target.reported
                and (now - target.reported_at >= STATUS_EVERY_SECONDS)
            )
            target.replicas, target.problem = replicas, problem
            if count is not None:
                target.backlog = count
            if changed or stale:
                target.reported, target.reported_at = shown, now
            if wake is not None and wake < target.next_poll:
                # A scheduled job enters its lead before the next regular poll: look then.
                target.next_poll = wake
                heapq.heappush(self._due, (wake, target.key))
        if changed or stale:
            self.enqueue(target.key)

    def _work_backlog(
        self, target: Target, read: int | Work | None
    ) -> tuple[int | None, float | None]:
        """A work-aware target's backlog (due-soon scheduled jobs included), its busy
        workers noted, and the monotonic time of its next scheduled wake (or None)."""
        if not isinstance(read, Work):
            return (None if read is None else read), None
        wall_now, lead = self.wall(), target.source.schedule_lead
        target.busy, target.note = read.busy, read.note
        # A scheduled job wakes its target no sooner than this after the poll that saw
        # it (jobs due a few ms apart must not turn into a poll each); jobs due within
        # the lead plus this gap count now instead.
        gap = wake_gap(target.interval)
        count = read.backlog + due_soon(read.due_times, wall_now, lead + gap)
        wake_at = next_wake(read.due_times, wall_now, lead + gap)
        if wake_at is None:
            return count, None
        return count, self.clock() + max(gap, wake_at + gap - wall_now)

    def close(self) -> None:
        """Close broker connections."""
        for probe in self.probes.values():
            probe.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._secret_executor.shutdown(wait=False, cancel_futures=True)
