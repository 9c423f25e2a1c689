"""What a tenant's Redis can make the rq, celery and redis probes read and keep: every
probe call ends by its deadline however slowly the server answers, reads at most its
byte budget, and keeps short digests, never the tenant's values (real redis-server)."""

from __future__ import annotations

import contextlib
import gc
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from bgjob.scaling.network import NetworkPolicy
from bgjob.scaling.probes import (
    READ_BUDGET_BYTES,
    CeleryProbe,
    ProbeError,
    QueueRef,
    RedisProbe,
    RQProbe,
    Work,
)
from tests.e2e.brokers import RedisServer


def _beat() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port, password=redis_server.password)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def _rss_mb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 // 2**20


def test_huge_worker_hashes_are_never_read_whole_and_nothing_big_is_kept(
    redis_server: RedisServer, broker: redis.Redis
) -> None:
    big = b"x" * (5 * 2**20)
    for i in range(4):
        key = f"rq:worker:w{i}"
        broker.hset(
            key,
            mapping={
                "state": "busy",
                "hostname": big + b"%d" % i,
                "current_job": big + b"%d" % i,
                "last_heartbeat": _beat(),
            },
        )
        broker.sadd("rq:workers:q", key)
    broker.hset("rq:worker:pod-a", mapping={"state": "busy", "last_heartbeat": _beat()})
    broker.sadd("rq:workers:q", "rq:worker:pod-a")
    probe = RQProbe(NetworkPolicy())
    ref = QueueRef("rq", redis_server.url, "q", workers=20)
    probe.retain(ref.url, "t")
    try:
        gc.collect()
        before = _rss_mb()
        work = probe.backlog(ref, 5.0)
        gc.collect()
        assert isinstance(work, Work)
        # The hash with a 5 MB hostname cannot be a pod's: only pod-a is busy.
        assert work.busy == {"pod-a"}
        assert len(repr(work.activity)) < 1000
        assert _rss_mb() - before < 8, "the probe held the tenant's values"
    finally:
        probe.close()


@pytest.mark.parametrize("backend", ["rq", "celery"])
def test_an_answer_over_the_byte_budget_fails_the_probe_instead_of_filling_memory(
    redis_server: RedisServer, broker: redis.Redis, backend: str
) -> None:
    big = b"j" * (READ_BUDGET_BYTES + 1024)
    if backend == "rq":
        broker.zadd("rq:scheduled:q", {big: time.time() + 3600})
        probe: RedisProbe = RQProbe(NetworkPolicy())
    else:
        broker.zadd("unacked_index", {big: time.time()})
        probe = CeleryProbe(NetworkPolicy())
    ref = QueueRef(backend, redis_server.url, "q")
    probe.retain(ref.url, "t")
    try:
        with pytest.raises(ProbeError) as error:
            probe.backlog(ref, 5.0)
        assert f"over {READ_BUDGET_BYTES} bytes" in error.value.detail
        broker.flushdb()  # the same client recovers on the next poll
        assert isinstance(probe.backlog(ref, 5.0), Work)
    finally:
        probe.close()


@contextlib.contextmanager
def _dripping_server() -> Iterator[int]:
    """A server that answers every command with a valid reply, one byte every 0.2 s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            for byte in b"$100\r\n" + b"x" * 100 + b"\r\n":
                if stop.is_set():
                    return
                conn.sendall(bytes([byte]))
                time.sleep(0.2)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set():
                conn, _ = listener.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize("backend", ["redis", "rq", "celery"])
def test_a_server_dripping_bytes_cannot_stretch_a_probe_past_its_deadline(backend: str) -> None:
    probe = {"redis": RedisProbe, "rq": RQProbe, "celery": CeleryProbe}[backend](NetworkPolicy())
    with _dripping_server() as port:
        ref = QueueRef(backend, f"redis://127.0.0.1:{port}/0", "q")
        probe.retain(ref.url, "t")
        try:
            started = time.monotonic()
            with pytest.raises(ProbeError):
                probe.backlog(ref, 1.0)
            took = time.monotonic() - started
        finally:
            probe.close()
    assert took < 1.5, f"a 1 s probe ran {took:.2f} s"
