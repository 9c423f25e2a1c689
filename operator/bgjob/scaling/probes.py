"""Backlog probes: how many messages wait in a Redis list or a RabbitMQ queue, and what
an RQ or Celery pool holds (read from the job library's own keys in Redis).

Every call has a deadline (``timeout``) that bounds connecting, the handshake
and the read. Clients are kept per broker URL in a ``ClientPool``: reference
counted by the BackgroundJobs that use the URL, closed when the last one goes,
capped in number, each with its own lock. Clients are built from the URL's
parsed parts (never from query options) and dial only addresses the
``NetworkPolicy`` allows. Failures reach status as one generic message; the
detail goes to the debug log, without credentials.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika
import pika.exceptions
import redis
import redis.backoff
import redis.connection
import redis.retry

from bgjob.api import urls
from bgjob.scaling.network import NetworkPolicy

log = logging.getLogger("bgjob.scaler")

# The one message status shows for refused, timed out, denied and protocol errors:
# anything more precise would let a tenant map the operator's network.
UNREACHABLE = (
    "cannot read the backlog from the broker (refused, timed out, denied by the operator's "
    "network policy, or not a broker); details are in the operator's debug log"
)
MANAGEMENT_BODY_LIMIT = 64 * 1024
# The management API's answer for a queue (or vhost) that does not exist.
RABBITMQ_NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}
MAX_CLIENTS = 256
HEARTBEAT_SECONDS = 30

C = TypeVar("C")
_CLOSER = ThreadPoolExecutor(1, thread_name_prefix="broker-close")


class ProbeError(Exception):
    """The backlog could not be read. ``public`` is safe for status and Events; ``detail``
    (also free of credentials) is for the debug log."""

    def __init__(
        self,
        detail: str,
        public: str = UNREACHABLE,
        reason: str = "QueueUnreachable",
        stalled: bool = False,
    ) -> None:
        super().__init__(public)
        self.detail = detail
        self.public = public
        self.reason = reason
        self.stalled = stalled


@dataclass(frozen=True)
class Work:
    """What a work-aware backend (rq, celery) holds, read in one probe call."""

    backlog: int  # jobs waiting, in flight and due
    busy: frozenset[str] = frozenset()  # pods (worker hostnames) busy with a job
    # Epoch seconds of the earliest scheduled jobs not yet due (at most MAX_DUE_TIMES).
    due_times: tuple[float, ...] = ()
    # Changes whenever a job starts or finishes: the cooldown counts from its last change.
    activity: Hashable = None
    # What the backlog could not tell exactly (it counts more, never less), for status.
    note: str | None = None


# Workers read per probe, and future due times returned: every Redis read is bounded.
MAX_WORKERS = 512
MAX_DUE_TIMES = 64


@dataclass(frozen=True)
class QueueRef:
    """One queue on one broker: what a probe reads. Equal refs share one probe call."""

    backend: str  # "redis", "rabbitmq", "rq" or "celery"
    url: str
    name: str  # rq: the queue names joined by ","
    management_url: str | None = None  # RabbitMQ: count unacknowledged messages too
    allow_insecure_management: bool = False
    workers: int = 0  # rq: worker hashes read at most (0: MAX_WORKERS)

    def __str__(self) -> str:
        return f"{self.backend} {redact(self.url)} {self.name}"

    def __repr__(self) -> str:  # never the password, wherever a ref is printed
        return f"QueueRef({self})"


def redact(url: str) -> str:
    """The URL without its userinfo (a user name may be a token) and without its query
    (?password=)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port makes the URL unparsable
    except ValueError:
        return "<unparsable URL>"
    if parts.query:
        parts = parts._replace(query="***")
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1])
    return urlunsplit(parts._replace(fragment=""))


class Probe(Protocol):
    """Reads the backlog of one kind of broker."""

    def backlog(self, queue: QueueRef, timeout: float) -> int | Work: ...

    def retain(self, url: str, user: Hashable) -> None: ...

    def release(self, url: str, user: Hashable) -> None: ...

    def close(self) -> None: ...


# --- the pool -------------------------------------------------------------------------


@dataclass
class _Entry(Generic[C]):
    lock: threading.Lock = field(default_factory=threading.Lock)
    client: C | None = None
    users: set[Hashable] = field(default_factory=set)
    used: float = 0.0


class ClientPool(Generic[C]):
    """Clients by URL: reference counted, closed with their last user, at most ``cap`` open."""

    def __init__(
        self,
        open_client: Callable[[str, float], C],
        close_client: Callable[[C], None],
        cap: int,
        closer: Executor | None = None,
    ) -> None:
        self._open = open_client
        self._close = close_client
        self.cap = cap
        # Where released clients are closed: not on the caller's thread (a reconcile
        # worker) when given, since closing a connection to a dying broker can block.
        self._closer = closer
        self._entries: dict[str, _Entry[C]] = {}
        self._lock = threading.Lock()

    def retain(self, url: str, user: Hashable) -> None:
        with self._lock:
            self._entries.setdefault(url, _Entry()).users.add(user)

    def release(self, url: str, user: Hashable) -> None:
        with self._lock:
            entry = self._entries.get(url)
            if entry is None:
                return
            entry.users.discard(user)
            if entry.users:
                return
            del self._entries[url]
        if self._closer is None:
            self._shut(entry)
        else:
            self._closer.submit(self._shut, entry)

    def users(self, url: str) -> int:
        with self._lock:
            entry = self._entries.get(url)
            return 0 if entry is None else len(entry.users)

    def open_clients(self) -> int:
        with self._lock:
            return sum(entry.client is not None for entry in self._entries.values())

    def _shut(self, entry: _Entry[C]) -> None:
        """Close an entry's client once no call is using it (or leave that to the call)."""
        if entry.lock.acquire(blocking=False):
            try:
                client, entry.client = entry.client, None
            finally:
                entry.lock.release()
            if client is not None:
                self._quietly_close(client)
        # Otherwise the call in progress sees the entry gone and closes it when done.

    def _quietly_close(self, client: C) -> None:
        with contextlib.suppress(Exception):
            self._close(client)

    def _make_room(self) -> None:
        """Close the least recently used idle clients beyond the cap (they reconnect later)."""
        with self._lock:
            open_entries = [e for e in self._entries.values() if e.client is not None]
            excess = len(open_entries) - self.cap + 1
            victims = sorted(open_entries, key=lambda e: e.used)[: max(0, excess)]
        for entry in victims:
            self._shut(entry)

    @contextlib.contextmanager
    def use(self, url: str, timeout: float) -> Iterator[_Handle[C]]:
        """Hold this URL's client (and only its lock) for one call; a failing call drops it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            entry = self._entries.get(url)
            if entry is None:
                entry = _Entry()  # nobody retains it: closed right after this call
        if not entry.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise TimeoutError("another call to this broker is still running")
        handle = _Handle(self, entry, url, deadline)
        try:
            yield handle
        except BaseException:
            handle.reset()
            raise
        finally:
            entry.used = time.monotonic()
            with self._lock:
                orphan = self._entries.get(url) is not entry
            if orphan:
                handle.reset()
            entry.lock.release()

    def drop(self, url: str) -> None:
        """Close the client of a URL that just failed (the next call reconnects)."""
        with self._lock:
            entry = self._entries.get(url)
        if entry is not None:
            self._shut(entry)

    def close(self) -> None:
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            self._shut(entry)


class _Handle(Generic[C]):
    """One call's hold on a pooled client (the entry's lock is held)."""

    def __init__(self, pool: ClientPool[C], entry: _Entry[C], url: str, deadline: float) -> None:
        self.pool, self.entry, self.url, self.deadline = pool, entry, url, deadline
        self.reused = entry.client is not None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def get(self) -> C:
        if self.entry.client is None:
            self.pool._make_room()
            self.entry.client = self.pool._open(self.url, max(0.05, self.left()))
        return self.entry.client

    def reset(self) -> None:
        stale, self.entry.client = self.entry.client, None
        if stale is not None:
            self.pool._quietly_close(stale)


RECONNECTABLE = (redis.ConnectionError, pika.exceptions.AMQPConnectionError, OSError)


R = TypeVar("R")


def _with_reconnect(pool: ClientPool[C], url: str, timeout: float, call: Callable[[C], R]) -> R:
    """Run ``call`` on the URL's client; a reused client that fails (the broker dropped an
    idle connection) is replaced once, within the same deadline."""
    with pool.use(url, timeout) as handle:
        try:
            return call(handle.get())
        except RECONNECTABLE:
            if not handle.reused or handle.left() < 0.05:
                raise
        handle.reset()
        return call(handle.get())


# --- Redis ----------------------------------------------------------------------------


# Bytes one probe call may read from a Redis server, whatever its keys hold: a tenant's
# values (worker hashes, job ids) never fill the operator's memory.
READ_BUDGET_BYTES = 256 * 1024


class ReadLimitExceeded(Exception):
    """A probe call's answer went over its byte budget."""


@dataclass
class _Budget:
    """What the call in progress on a client may still use: a monotonic deadline for the
    whole call (not per read) and a number of bytes. Shared by the client's connections."""

    deadline: float | None = None
    left: int = READ_BUDGET_BYTES

    def arm(self, deadline: float, max_bytes: int = READ_BUDGET_BYTES) -> None:
        self.deadline, self.left = deadline, max_bytes

    def remaining(self) -> float | None:
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the probe's deadline passed")
        return left


class _GuardedSocket:
    """A connected socket whose every read and write ends by the call's deadline (the
    timeout is reset to the time left before each one, so a server dripping bytes cannot
    stretch a call) and whose reads stop at the call's byte budget."""

    def __init__(self, sock: socket.socket, budget: _Budget) -> None:
        self._sock, self._budget = sock, budget
        self._asked: float | None = sock.gettimeout()

    def settimeout(self, value: float | None) -> None:
        self._asked = value
        self._sock.settimeout(value)

    def gettimeout(self) -> float | None:
        return self._asked

    def _limit(self) -> None:
        left = self._budget.remaining()
        if left is None:
            self._sock.settimeout(self._asked)
        else:
            self._sock.settimeout(left if self._asked is None else min(left, self._asked))

    def recv(self, size: int, *flags: int) -> bytes:
        if self._budget.left <= 0:
            raise ReadLimitExceeded(f"answer over {READ_BUDGET_BYTES} bytes")
        self._limit()
        data = self._sock.recv(min(size, self._budget.left + 1), *flags)
        self._budget.left -= len(data)
        if self._budget.left < 0:
            raise ReadLimitExceeded(f"answer over {READ_BUDGET_BYTES} bytes")
        return data

    def sendall(self, data: bytes, *flags: int) -> None:
        self._limit()
        self._sock.sendall(data, *flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _PolicyConnection(redis.connection.Connection):
    """A Redis connection that dials only addresses the network policy allows, each call
    bounded by its client's budget (deadline and bytes)."""

    def __init__(self, *args: Any, policy: NetworkPolicy, budget: _Budget, **kwargs: Any) -> None:
        self.policy = policy
        self.budget = budget
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]

    def _dial(self) -> socket.socket:
        timeout = float(self.socket_connect_timeout or 1.0)
        left = self.budget.remaining()
        sock = self.policy.connect(self.host, int(self.port), min(timeout, left or timeout))
        sock.settimeout(self.socket_timeout)
        return sock

    def _connect(self) -> socket.socket:
        return _GuardedSocket(self._dial(), self.budget)  # type: ignore[return-value]


class _PolicySSLConnection(redis.connection.SSLConnection, _PolicyConnection):
    """rediss://: TLS (certificate and hostname checked) over a policy-checked socket."""

    def _connect(self) -> socket.socket:
        sock = self._dial()
        left = self.budget.remaining()
        if left is not None:
            sock.settimeout(left)  # the handshake too ends by the deadline
        try:
            wrapped = self._wrap_socket_with_ssl(sock)  # type: ignore[no-untyped-call]
        except (OSError, redis.RedisError):
            sock.close()
            raise
        wrapped.settimeout(self.socket_timeout)
        return _GuardedSocket(wrapped, self.budget)  # type: ignore[return-value]


@dataclass
class _RedisClient:
    client: redis.Redis
    pool: redis.ConnectionPool
    budget: _Budget


class RedisProbe:
    """LLEN of a Redis list (subclasses read a job library's keys on the same clients)."""

    def __init__(self, policy: NetworkPolicy | None = None, cap: int = MAX_CLIENTS) -> None:
        self.policy = policy or NetworkPolicy()
        self.pool: ClientPool[_RedisClient] = ClientPool(self._open, self._close, cap, _CLOSER)

    def _open(self, url: str, timeout: float) -> _RedisClient:
        parts = urls.split(url)
        assert parts is not None, "checked by the scaler before probing"
        tls = parts.scheme == "rediss"
        budget = _Budget()
        kwargs: dict[str, Any] = {
            "connection_class": _PolicySSLConnection if tls else _PolicyConnection,
            "policy": self.policy,
            "budget": budget,
            "host": parts.hostname,
            "port": parts.port_number(),
            "db": int(parts.path[1:] or 0) if len(parts.path) > 1 else 0,
            "username": parts.username or None,
            "password": parts.password,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
            "health_check_interval": 0,
            "max_connections": 1,
        }
        pool = redis.ConnectionPool(**kwargs)
        return _RedisClient(redis.Redis(connection_pool=pool), pool, budget)

    @staticmethod
    def _close(client: _RedisClient) -> None:
        client.pool.disconnect()

    def backlog(self, queue: QueueRef, timeout: float) -> int | Work:
        def llen(client: _RedisClient) -> int:
            length = client.client.llen(queue.name)
            return int(length)  # type: ignore[arg-type]

        return self._read("redis", queue, timeout, llen)

    def _read(
        self, kind: str, queue: QueueRef, timeout: float, read: Callable[[_RedisClient], R]
    ) -> R:
        """One probe call: ``read`` on the URL's client, the whole call (a reconnect
        included) bounded by one deadline and one byte budget."""
        deadline = time.monotonic() + timeout
        armed: list[_Budget] = []

        def call(client: _RedisClient) -> R:
            if not armed or armed[-1] is not client.budget:
                client.budget.arm(deadline, armed[-1].left if armed else READ_BUDGET_BYTES)
                armed.append(client.budget)
            return read(client)

        try:
            return _with_reconnect(self.pool, queue.url, timeout, call)
        except ReadLimitExceeded as error:
            raise ProbeError(f"{kind} {queue}: {error}") from None
        except (redis.RedisError, OSError, ValueError) as error:
            raise ProbeError(f"{kind} {queue}: {type(error).__name__}: {error}") from None

    def retain(self, url: str, user: Hashable) -> None:
        self.pool.retain(url, user)

    def release(self, url: str, user: Hashable) -> None:
        self.pool.release(url, user)

    def close(self) -> None:
        self.pool.close()


# --- RQ -------------------------------------------------------------------------------
# The key layout read here is RQ's (python-rq 2.x and 3.0, checked against rq 3.0.0's
# source; RQ_KEY_PREFIX left at its default "rq"):
#   rq:queue:<q>      list of job ids waiting
#   rq:wip:<q>        StartedJobRegistry, a zset of jobs in flight scored by their expiry
#                     (entries whose expiry passed belong to dead workers and are not work)
#   rq:scheduled:<q>  ScheduledJobRegistry, a zset scored by the due epoch (enqueue_at/_in)
#   rq:workers:<q>    set of the keys of the workers listening on <q>
#   rq:worker:<name>  hash: state (busy|idle|...), current_job, hostname,
#                     successful_job_count, failed_job_count, last_heartbeat
RQ_PREFIX = "rq"
# The worker hash fields read, each only when HSTRLEN says it is at most this long (a
# hostname longer than a DNS-1123 name cannot be a pod's): a tenant's hash is never read
# whole.
RQ_WORKER_FIELDS = {"state": 16, "hostname": 253, "last_heartbeat": 40}
# Job ids of the StartedJobRegistry read per queue, only for the activity fingerprint.
RQ_WIP_IDS = 32
# A busy worker heartbeats every job_monitoring_interval (30 s by default); one silent
# for this long was killed mid-job (SIGKILL, OOM) and holds no job any more, though its
# hash lives on until RQ's worker TTL (420 s) ends.
RQ_STALE_HEARTBEAT_SECONDS = 150.0
DNS_1123_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def workers_to_read(max_replicas: int) -> int:
    """Worker hashes an RQ probe reads: twice the pool's most replicas (its pods and
    some left over from earlier ones), capped at MAX_WORKERS."""
    return max(1, min(MAX_WORKERS, 2 * max_replicas))


def digest(parts: list[bytes]) -> str:
    """A short digest of what a fingerprint compares: never the tenant's bytes themselves."""
    return hashlib.blake2b(b"\0".join(parts), digest_size=8).hexdigest()


@dataclass(frozen=True)
class RQQueueReply:
    """What one RQ queue's keys hold, as read by the probe's first pipeline."""

    queued: int
    started: int
    due: int
    future: list[tuple[bytes, float]]  # (job id, due epoch) of scheduled jobs not yet due
    wip_ids: list[bytes]  # the first RQ_WIP_IDS job ids in flight
    finished: int  # ZCARD of the FinishedJobRegistry
    failed: int  # ZCARD of the FailedJobRegistry


def rq_work(now: float, queues: list[RQQueueReply], workers: dict[str, dict[str, bytes]]) -> Work:
    """The Work of an RQ pool from the probe's replies (pure).

    ``workers`` maps a worker key to the fields read of its hash (those short enough).
    A busy worker whose heartbeat stopped long ago is not busy; nor is one whose name
    cannot be a pod's. Activity is built from the registries (no sample of workers): it
    changes when a job starts or finishes, not between two reads of an idle pool.
    """
    busy: set[str] = set()
    for key, fields in sorted(workers.items()):
        if fields.get("state") != b"busy" or _stale(fields.get("last_heartbeat"), now):
            continue
        name = fields.get("hostname") or key.removeprefix(f"{RQ_PREFIX}:worker:").encode()
        text = name.decode(errors="replace")
        if len(text) <= 253 and DNS_1123_NAME.fullmatch(text):
            busy.add(text)
    times = sorted(score for q in queues for _, score in q.future if score > now)
    return Work(
        backlog=sum(q.queued + q.started + q.due for q in queues),
        busy=frozenset(busy),
        due_times=tuple(times[:MAX_DUE_TIMES]),
        activity=tuple((q.started, digest(q.wip_ids), q.finished, q.failed) for q in queues),
    )


# A heartbeat further ahead than this is a clock no worker of the pool has: not fresh.
RQ_FUTURE_HEARTBEAT_SECONDS = 60.0


def _stale(heartbeat: bytes | None, now: float) -> bool:
    """Whether an RQ heartbeat (``%Y-%m-%dT%H:%M:%S.%fZ``, UTC) proves nothing about a
    live worker: older than RQ_STALE_HEARTBEAT_SECONDS, more than a minute ahead,
    absent or unreadable (RQ writes one when a worker starts and with every job)."""
    if not heartbeat:
        return True
    try:
        beat = datetime.strptime(heartbeat.decode(), "%Y-%m-%dT%H:%M:%S.%fZ")
    except (ValueError, UnicodeDecodeError):
        return True
    age = now - beat.replace(tzinfo=UTC).timestamp()
    return age > RQ_STALE_HEARTBEAT_SECONDS or age < -RQ_FUTURE_HEARTBEAT_SECONDS


class RQProbe(RedisProbe):
    """Jobs queued, in flight and due, busy workers and the next due times of RQ queues:
    three pipelined round trips, each command bounded (no KEYS, no unbounded range, no
    field read before its length is known), the whole under the call's byte budget."""

    def backlog(self, queue: QueueRef, timeout: float) -> int | Work:
        names = queue.name.split(",")
        limit = queue.workers or MAX_WORKERS

        def read(client: _RedisClient) -> Work:
            now = time.time()
            pipe = client.client.pipeline(transaction=False)
            for name in names:
                pipe.llen(f"{RQ_PREFIX}:queue:{name}")
                pipe.zcount(f"{RQ_PREFIX}:wip:{name}", f"({now}", "+inf")
                pipe.zcount(f"{RQ_PREFIX}:scheduled:{name}", "-inf", now)
                pipe.zrangebyscore(
                    f"{RQ_PREFIX}:scheduled:{name}",
                    f"({now}",
                    "+inf",
                    start=0,
                    num=MAX_DUE_TIMES,
                    withscores=True,
                )
                pipe.zrangebyscore(
                    f"{RQ_PREFIX}:wip:{name}", f"({now}", "+inf", start=0, num=RQ_WIP_IDS
                )
                pipe.zcard(f"{RQ_PREFIX}:finished:{name}")
                pipe.zcard(f"{RQ_PREFIX}:failed:{name}")
                pipe.srandmember(f"{RQ_PREFIX}:workers:{name}", limit)
            replies = pipe.execute()
            per = [replies[i : i + 8] for i in range(0, len(replies), 8)]
            keys = sorted({k.decode(errors="replace") for part in per for k in part[7]})
            keys = [k for k in keys if k.startswith(f"{RQ_PREFIX}:worker:")][:limit]
            return rq_work(
                now,
                [
                    RQQueueReply(
                        int(p[0]),
                        int(p[1]),
                        int(p[2]),
                        list(p[3]),
                        list(p[4]),
                        int(p[5]),
                        int(p[6]),
                    )
                    for p in per
                ],
                _worker_fields(client, keys),
            )

        return self._read("rq", queue, timeout, read)


def _worker_fields(client: _RedisClient, keys: list[str]) -> dict[str, dict[str, bytes]]:
    """The short fields of the worker hashes: lengths first (HSTRLEN), then only the
    fields within RQ_WORKER_FIELDS' limits."""
    if not keys:
        return {}
    fields = list(RQ_WORKER_FIELDS)
    pipe = client.client.pipeline(transaction=False)
    for key in keys:
        for name in fields:
            pipe.hstrlen(key, name)
    lengths = pipe.execute()
    wanted: dict[str, list[str]] = {}
    for i, key in enumerate(keys):
        sizes = lengths[i * len(fields) : (i + 1) * len(fields)]
        if any(int(n) > RQ_WORKER_FIELDS[f] for f, n in zip(fields, sizes, strict=True)):
            continue  # a field no RQ worker of a pod writes: not a pod's worker
        short = [f for f, n in zip(fields, sizes, strict=True) if int(n) > 0]
        if "state" in short:
            wanted[key] = short
    if not wanted:
        return {}
    pipe = client.client.pipeline(transaction=False)
    for key, names in wanted.items():
        pipe.hmget(key, names)
    return {
        key: {f: v for f, v in zip(names, values, strict=True) if isinstance(v, bytes)}
        for (key, names), values in zip(wanted.items(), pipe.execute(), strict=True)
    }


# --- Celery ---------------------------------------------------------------------------
# The key layout read here is kombu's Redis transport (kombu 5.7.0, Celery 5.7; the
# same since kombu 4), default transport options (no global_keyprefix):
#   <queue>                    list of messages waiting at priority 0 (the default)
#   <queue>\x06\x16<3|6|9>       lists of the other default priority steps
#   unacked                    hash delivery_tag -> JSON [message, exchange, routing key],
#                              delivered and not acknowledged, for every queue of the
#                              database; written and deleted with its index entry in one
#                              transaction (a field without one is never restored: not work)
#   unacked_index              zset delivery_tag -> delivery time (a tag whose hash field
#                              is gone is dropped by kombu's next restore pass)
#   _kombu.binding.<exchange>  set of "routing key\x06\x16pattern\x06\x16queue": the queues an
#                              exchange routes to (pattern: a topic binding's regex, else "")
CELERY_PRIORITY_SEP = "\x06\x16"
CELERY_PRIORITY_STEPS = (3, 6, 9)
CELERY_BINDING_PREFIX = "_kombu.binding."
# Unacknowledged messages read per probe (the newest in unacked_index). Of each only the
# last CELERY_TAIL_BYTES are returned (kombu's JSON ends with the exchange and routing
# key), cut on the server; a tag longer than kombu's (a UUID) is not read. The server
# copies at most CELERY_ENTRY_BYTES of one entry and CELERY_SERVER_BYTES in all to cut
# them. An entry that cannot be attributed counts for the queue: a pool may count
# another's task in hand (and says so), never miss its own.
CELERY_UNACKED_READ = 128
CELERY_TAG_BYTES = 64
CELERY_TAIL_BYTES = 1024
CELERY_ENTRY_BYTES = 8 * 2**20
CELERY_SERVER_BYTES = 64 * 2**20
# Members of one exchange's binding set the server looks through (SCARD first).
CELERY_BINDINGS_READ = 1024
# What the tail script returns for an entry not read, and for a tag no longer in the hash.
CELERY_NOT_READ = -1
CELERY_GONE = 0

_CELERY_TAILS = """
local tags = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local maxtag, tail = tonumber(ARGV[2]), tonumber(ARGV[3])
local maxentry, left = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
for i, tag in ipairs(tags) do
  if #tag > maxtag then
    out[i] = -1
  else
    local size = redis.call('HSTRLEN', KEYS[2], tag)
    if size == 0 then
      out[i] = 0
    elseif size > maxentry or size > left then
      out[i] = -1
    else
      left = left - size
      out[i] = string.sub(redis.call('HGET', KEYS[2], tag), -tail)
    end
  end
end
return {redis.call('ZCARD', KEYS[1]), out}
"""

# What the bindings script answers per (exchange, routing key) of the entries read.
CELERY_ROUTE_NONE = 0  # the exchange has no binding
CELERY_ROUTE_MANY = -1  # more than CELERY_BINDINGS_READ bindings: not looked through
CELERY_ROUTE_OURS = 1  # a binding of this queue with this very routing key
CELERY_ROUTE_MAYBE = 2  # a topic binding of this queue with wildcards: may match
CELERY_ROUTE_OTHER = 3  # bindings, none of them leading to this queue
_CELERY_BINDINGS = """
local queue, cap, sep = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local out = {}
for i, key in ipairs(KEYS) do
  local rk = ARGV[3 + i]
  local n = redis.call('SCARD', key)
  if n == 0 then
    out[i] = 0
  elseif n > cap then
    out[i] = -1
  else
    local code = 3
    for _, m in ipairs(redis.call('SMEMBERS', key)) do
      local a = string.find(m, sep, 1, true)
      local b = a and string.find(m, sep, a + #sep, true)
      if b then
        local bkey = string.sub(m, 1, a - 1)
        local pattern = string.sub(m, a + #sep, b - 1)
        if string.sub(m, b + #sep) == queue then
          if bkey == rk then
            code = 1
            break
          elseif pattern ~= '' and string.find(bkey, '[%*#]') then
            code = 2
          end
        end
      end
    end
    out[i] = code
  end
end
return out
"""


def _json_string_before(text: str, end: int) -> tuple[str, int] | None:
    """The JSON string that ends (closing quote) at ``end`` and where it opens, scanning
    back: the first quote not escaped (an even run of backslashes before it)."""
    i = end - 1
    while i >= 0:
        if text[i] == '"':
            slashes = 0
            while i - 1 - slashes >= 0 and text[i - 1 - slashes] == "\\":
                slashes += 1
            if slashes % 2 == 0:
                try:
                    value = json.loads(text[i : end + 1])
                except ValueError:
                    return None
                return (value, i) if isinstance(value, str) else None
            i -= slashes + 1
        else:
            i -= 1
    return None


def celery_route(tail: bytes) -> tuple[str, str] | None:
    """(exchange, routing key) from the end of one ``unacked`` entry (kombu's
    ``[message, "exchange", "routing key"]``), or None when it does not end so. Never a
    full parse of the tenant's JSON: a bounded scan back over the last two strings."""
    # The cut may fall inside a multi-byte character (of the message, never of the two
    # strings: kombu's JSON escapes non-ASCII).
    text = tail.decode(errors="replace").rstrip()
    if not text.endswith("]"):
        return None
    end = len(text[:-1].rstrip()) - 1
    if end < 0 or text[end] != '"':
        return None
    routing = _json_string_before(text, end)
    if routing is None:
        return None
    key, start = routing
    comma = len(text[:start].rstrip()) - 1
    if comma < 0 or text[comma] != ",":
        return None
    end = len(text[:comma].rstrip()) - 1
    if end < 0 or text[end] != '"':
        return None
    exchange = _json_string_before(text, end)
    if exchange is None:
        return None
    name, start = exchange
    before = text[:start].rstrip()
    if not before.endswith(","):
        return None
    return name, key


def celery_owned(queue: str, exchange: str, routing_key: str, route: int | None) -> bool | None:
    """Whether a message routed by (exchange, routing key) was taken from ``queue``: kombu's
    lookup, from the exchange's bindings (``route``, a CELERY_ROUTE_* code). None: cannot
    tell (no binding, too many, a topic pattern of this queue). The anonymous exchange
    ("") routes to the queue named by the routing key."""
    if not exchange:
        return routing_key == queue
    if route == CELERY_ROUTE_OURS:
        return True
    if route == CELERY_ROUTE_OTHER:
        return False
    return None


def celery_unacked(
    queue: str,
    indexed: int,
    read: list[bytes | int],
    routes: dict[tuple[str, str], int],
) -> tuple[int, int]:
    """(messages in hand counted for ``queue``, of those how many were not attributed),
    from ZCARD ``indexed`` of unacked_index, the newest entries as the tail script
    returned them (a tail, CELERY_NOT_READ or CELERY_GONE) and the bindings' answer
    per (exchange, routing key). Pure. Index entries beyond those read count as
    unknown; hash fields with no index entry are never counted."""
    ours = unknown = 0
    for item in read:
        if isinstance(item, int):
            unknown += item != CELERY_GONE
            continue
        route = celery_route(item)
        owned = None if route is None else celery_owned(queue, *route, routes.get(route))
        if owned is None:
            unknown += 1
        elif owned:
            ours += 1
    unknown += max(0, indexed - len(read))
    return ours + unknown, unknown


def celery_work(
    waiting: list[int],
    unacked: int,
    latest: list[tuple[bytes, float]],
    unattributed: int = 0,
) -> Work:
    """The Work of a Celery queue from its replies (pure): waiting at every priority plus
    the queue's unacknowledged; activity changes with every delivery and every
    acknowledgement."""
    newest = (digest([latest[0][0]]), latest[0][1]) if latest else None
    note = None
    if unattributed:
        note = (
            f"{unattributed} unacknowledged message(s) of the database could not be "
            f"attributed to a queue (beyond the newest {CELERY_UNACKED_READ}, not kombu's, "
            "or its exchange's bindings not found) and count for this queue too"
        )
    return Work(backlog=sum(waiting) + unacked, activity=(unacked, newest), note=note)


class CeleryProbe(RedisProbe):
    """Messages waiting and unacknowledged on a Celery queue (kombu's Redis transport):
    three bounded round trips: the lengths; the tails of the newest unacknowledged
    entries (a Lua script cuts them on the server); the bindings of their exchanges
    (another script answers one code per exchange and routing key)."""

    def backlog(self, queue: QueueRef, timeout: float) -> int | Work:
        def read(client: _RedisClient) -> Work:
            pipe = client.client.pipeline(transaction=False)
            pipe.llen(queue.name)
            for step in CELERY_PRIORITY_STEPS:
                pipe.llen(f"{queue.name}{CELERY_PRIORITY_SEP}{step}")
            pipe.zrevrange("unacked_index", 0, 0, withscores=True)
            pipe.eval(
                _CELERY_TAILS,
                2,
                "unacked_index",
                "unacked",
                CELERY_UNACKED_READ,
                CELERY_TAG_BYTES,
                CELERY_TAIL_BYTES,
                CELERY_ENTRY_BYTES,
                CELERY_SERVER_BYTES,
            )
            *waiting, latest, (indexed, tails) = pipe.execute()
            read_ = [t if isinstance(t, int) else bytes(t) for t in tails]
            routes = _celery_routes(client, queue.name, read_)
            unacked, unattributed = celery_unacked(queue.name, int(indexed), read_, routes)
            return celery_work([int(n) for n in waiting], unacked, list(latest), unattributed)

        return self._read("celery", queue, timeout, read)


def _celery_routes(
    client: _RedisClient, queue: str, read: list[bytes | int]
) -> dict[tuple[str, str], int]:
    """The bindings' answer (CELERY_ROUTE_*) for each named exchange and routing key of
    the entries read, one script call."""
    pairs = sorted(
        {
            route
            for item in read
            if not isinstance(item, int) and (route := celery_route(item)) is not None and route[0]
        }
    )
    if not pairs:
        return {}
    codes = client.client.eval(
        _CELERY_BINDINGS,
        len(pairs),
        *[CELERY_BINDING_PREFIX + exchange for exchange, _ in pairs],
        queue,
        CELERY_BINDINGS_READ,
        CELERY_PRIORITY_SEP,
        *[key for _, key in pairs],
    )
    return {pair: int(code) for pair, code in zip(pairs, codes, strict=True)}  # type: ignore[arg-type]


# --- RabbitMQ -------------------------------------------------------------------------


class _PolicyHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, timeout: float, policy: NetworkPolicy) -> None:
        super().__init__(host, port, timeout=timeout)
        self.policy = policy

    def connect(self) -> None:
        self.sock = self.policy.connect(self.host, self.port, float(self.timeout or 1.0))


class _PolicyHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, timeout: float, policy: NetworkPolicy) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.policy = policy

    def connect(self) -> None:
        sock = self.policy.connect(self.host, self.port, float(self.timeout or 1.0))
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class RabbitMQProbe:
    """Ready messages of a RabbitMQ queue, by a passive queue_declare over AMQP, or ready
    plus unacknowledged ones from the management API."""

    def __init__(self, policy: NetworkPolicy | None = None, cap: int = MAX_CLIENTS) -> None:
        self.policy = policy or NetworkPolicy()
        self.pool: ClientPool[pika.BlockingConnection] = ClientPool(
            self._open, self._close, cap, _CLOSER
        )

    def _open(self, url: str, timeout: float) -> pika.BlockingConnection:
        parts = urls.split(url)
        assert parts is not None, "checked by the scaler before probing"
        port = parts.port_number()
        address = self.policy.checked_address(parts.hostname, port, timeout)
        params = pika.ConnectionParameters(
            host=address,
            port=port,
            virtual_host=unquote(parts.path[1:]) if len(parts.path) > 1 else "/",
            credentials=pika.PlainCredentials(
                parts.username or "guest", parts.password if parts.password is not None else "guest"
            ),
            connection_attempts=1,
            retry_delay=0,
            socket_timeout=timeout,
            stack_timeout=timeout,
            blocked_connection_timeout=timeout,
            heartbeat=HEARTBEAT_SECONDS,
            ssl_options=(
                pika.SSLOptions(ssl.create_default_context(), server_hostname=parts.hostname)
                if parts.scheme == "amqps"
                else None
            ),
        )
        return pika.BlockingConnection(params)

    @staticmethod
    def _close(connection: pika.BlockingConnection) -> None:
        if connection.is_open:
            connection.close()

    def backlog(self, queue: QueueRef, timeout: float) -> int:
        if queue.management_url is not None:
            return self._management_backlog(queue, timeout)
        missing: list[bool] = []

        def declare(connection: pika.BlockingConnection) -> int:
            channel = connection.channel()
            try:
                declared = channel.queue_declare(queue=queue.name, passive=True)
                return int(declared.method.message_count)
            except pika.exceptions.ChannelClosedByBroker as error:
                if error.reply_code == 404:
                    missing.append(True)
                raise
            finally:
                if channel.is_open:
                    channel.close()

        try:
            return _with_reconnect(self.pool, queue.url, timeout, declare)
        except (pika.exceptions.AMQPError, OSError, ValueError) as error:
            if missing:
                raise ProbeError(
                    f"rabbitmq {queue}: no such queue",
                    public=f"queue {queue.name!r} does not exist on the broker",
                ) from None
            detail = str(error) or type(error).__name__
            raise ProbeError(f"rabbitmq {queue}: {type(error).__name__}: {detail}") from None

    def _management_backlog(self, queue: QueueRef, timeout: float) -> int:
        """Ready plus unacknowledged messages, from the management HTTP API: credentials go
        only to the AMQP URL's host, never over plain http unless allowed, never through a
        redirect; the read has a total deadline and a size limit."""
        assert queue.management_url is not None
        amqp = urls.split(queue.url)
        api = urls.split(queue.management_url, urls.MANAGEMENT_SHAPE)
        if amqp is None or api is None:
            raise ProbeError("unparsable URL", public="the queue's URL is not valid")
        if api.hostname.lower().rstrip(".") != amqp.hostname.lower().rstrip("."):
            raise ProbeError(
                "management host differs from the AMQP host",
                public="rabbitmq.managementUrl must have the AMQP URL's host: the broker's "
                "credentials are sent nowhere else",
                reason="ManagementHostMismatch",
                stalled=True,
            )
        if api.scheme != "https" and not queue.allow_insecure_management:
            raise ProbeError(
                "management over http",
                public="rabbitmq.managementUrl must be https (or set allowInsecureManagement)",
                reason="InsecureManagementUrl",
                stalled=True,
            )
        vhost = unquote(amqp.path[1:]) if len(amqp.path) > 1 else "/"
        path = (
            api.path.rstrip("/")
            + f"/api/queues/{quote(vhost, safe='')}/{quote(queue.name, safe='')}"
        )
        user = amqp.username or "guest"
        password = amqp.password if amqp.password is not None else "guest"
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        connection_class = _PolicyHTTPS if api.scheme == "https" else _PolicyHTTP
        connection = connection_class(api.hostname, api.port_number(), timeout, self.policy)
        # The whole exchange, however slowly the server drips bytes, ends at the deadline.
        watchdog = threading.Timer(timeout, _abort, (connection,))
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.request(
                "GET",
                path,
                headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
            )
            response = connection.getresponse()
            body = response.read(MANAGEMENT_BODY_LIMIT + 1)
            status = response.status
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise ProbeError(f"rabbitmq management {queue}: {type(error).__name__}") from None
        finally:
            watchdog.cancel()
            connection.close()
        if len(body) > MANAGEMENT_BODY_LIMIT:
            raise ProbeError(
                f"rabbitmq management {queue}: answer over {MANAGEMENT_BODY_LIMIT} bytes"
            )
        # Whatever is not this queue's own answer (a web server's 404, any JSON object)
        # fails with the message of a closed port: status must not tell a tenant what
        # else listens at a host and port of its choosing.
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if status == 404 and data == RABBITMQ_NOT_FOUND:
            raise ProbeError(
                f"rabbitmq management {queue}: no such queue",
                public=f"queue {queue.name!r} does not exist on the broker",
            )
        if status != 200:  # 3xx included: a redirect is never followed
            raise ProbeError(f"rabbitmq management {queue}: HTTP {status}")
        if not isinstance(data, dict) or (data.get("name"), data.get("vhost")) != (
            queue.name,
            vhost,
        ):
            raise ProbeError(f"rabbitmq management {queue}: not this queue's object")
        # A queue whose statistics are not collected yet has no counts: its backlog is
        # unknown, not 0.
        counts = [data.get("messages_ready"), data.get("messages_unacknowledged", 0)]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
            raise ProbeError(f"rabbitmq management {queue}: no message counts")
        return int(counts[0]) + int(counts[1])

    def retain(self, url: str, user: Hashable) -> None:
        self.pool.retain(url, user)

    def release(self, url: str, user: Hashable) -> None:
        self.pool.release(url, user)

    def close(self) -> None:
        self.pool.close()


def _abort(connection: http.client.HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
