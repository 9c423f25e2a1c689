"""The scaler under faults: a slow broker delays nobody else, clients are reference
counted, Secrets are read in parallel with a deadline, the management API gets
credentials only on the AMQP host, and the cooldown history stays bounded."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import http.server
import socket
import threading
import time
from collections.abc import Hashable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bgjob.api.models import BackgroundJob, parse
from bgjob.kube import ApiError
from bgjob.scaling.decision import HISTORY_CAP, History, Limits, desired_replicas
from bgjob.scaling.network import NetworkPolicy
from bgjob.scaling.probes import ClientPool, ProbeError, QueueRef, RabbitMQProbe
from bgjob.scaling.scaler import PROBE_THREADS_PER_NAMESPACE, Scaler, ThreadGate

# --- the bounded history --------------------------------------------------------------


def test_a_huge_cooldown_keeps_the_history_bounded_and_cheap() -> None:
    limits = Limits(0, 10**9, 1, 0, cooldown_seconds=1e12)
    history = History()
    replicas = 0
    started = time.perf_counter()
    for second in range(100_000):
        # A backlog that shrinks every poll: every recommendation is distinct.
        replicas = desired_replicas(200_000 - second, replicas, limits, history, now=second)
    elapsed = time.perf_counter() - started
    assert len(history.recommendations) <= HISTORY_CAP
    assert replicas == 200_000, "scaled down within the cooldown"
    assert elapsed < 2.0, f"{elapsed:.2f}s for 100k polls"


def test_the_history_is_a_sliding_maximum() -> None:
    history = History()
    for now, value in [(0, 5), (1, 3), (2, 4), (3, 1)]:
        history.remember(now, value, window=2)
    assert history.highest() == 4  # 5 left the window at t=3; 4 (t=2) is the highest
    assert [v for _, v in history.recommendations] == [4, 1]


# --- the pool ---------------------------------------------------------------------------


class Client:
    def __init__(self, url: str) -> None:
        self.url, self.closed = url, False


def _pool(cap: int = 8) -> tuple[ClientPool[Client], list[Client]]:
    opened: list[Client] = []

    def open_client(url: str, timeout: float) -> Client:
        opened.append(Client(url))
        return opened[-1]

    def close_client(client: Client) -> None:
        client.closed = True

    return ClientPool(open_client, close_client, cap), opened


def test_a_client_closes_with_its_last_user() -> None:
    pool, opened = _pool()
    pool.retain("redis://a", "job-1")
    pool.retain("redis://a", "job-2")
    with pool.use("redis://a", 1) as handle:
        handle.get()
    with pool.use("redis://a", 1) as handle:
        handle.get()
    assert len(opened) == 1, "the client is reused"
    pool.release("redis://a", "job-1")
    assert not opened[0].closed
    pool.release("redis://a", "job-2")
    assert opened[0].closed and pool.open_clients() == 0


def test_a_url_nobody_holds_is_closed_right_after_its_call() -> None:
    pool, opened = _pool()
    with pool.use("redis://stray", 1) as handle:
        handle.get()
    assert opened[0].closed


def test_a_failing_call_drops_its_client_and_the_pool_is_capped() -> None:
    pool, opened = _pool(cap=2)
    for i in range(5):
        pool.retain(f"redis://{i}", "job")
        with pool.use(f"redis://{i}", 1) as handle:
            handle.get()
        assert pool.open_clients() <= 2
    assert sum(not c.closed for c in opened) == 2
    with pytest.raises(OSError), pool.use("redis://4", 1) as handle:
        handle.get()
        raise OSError("reset")
    assert opened[-1].closed


def test_locks_are_per_url() -> None:
    pool, _ = _pool()
    pool.retain("redis://slow", "job-1")
    pool.retain("redis://fast", "job-2")
    inside = threading.Event()
    leave = threading.Event()

    def hold() -> None:
        with pool.use("redis://slow", 5):
            inside.set()
            leave.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait(5)
    started = time.monotonic()
    with pool.use("redis://fast", 1) as handle:
        handle.get()
    assert time.monotonic() - started < 0.2
    with pytest.raises(TimeoutError), pool.use("redis://slow", 0.2):
        pass
    leave.set()
    holder.join()


# --- the scaler -------------------------------------------------------------------------


def _bgj(
    name: str, url: str | None = None, secret: str | None = None, namespace: str = "ns"
) -> BackgroundJob:
    redis: dict[str, Any] = {"list": "jobs"}
    if url is not None:
        redis["url"] = url
    else:
        redis["urlFrom"] = {"secretKeyRef": {"name": secret, "key": "url"}}
    return parse(
        {
            "metadata": {"name": name, "namespace": namespace, "uid": name, "generation": 1},
            "spec": {
                "image": "w",
                "concurrency": 10,
                "trigger": {"queue": {"redis": redis, "targetPerReplica": 1}},
            },
        }
    )


class FakeProbe:
    """A broker per host: 'hole' never answers within the test, others answer at once."""

    def __init__(self) -> None:
        self.backlogs: dict[str, int] = {}
        self.held: dict[str, set[Hashable]] = {}
        self.calls: list[str] = []

    def backlog(self, queue: QueueRef, timeout: float) -> int:
        self.calls.append(queue.url)
        if "hole" in queue.url:
            time.sleep(3)
            raise ProbeError("timed out")
        if "down" in queue.url:
            raise ProbeError("connection refused")
        return self.backlogs.get(queue.url, 0)

    def retain(self, url: str, user: Hashable) -> None:
        self.held.setdefault(url, set()).add(user)

    def release(self, url: str, user: Hashable) -> None:
        self.held.get(url, set()).discard(user)

    def close(self) -> None:
        pass


class FakeKube:
    def __init__(self, secrets: dict[str, str], slow: set[str]) -> None:
        self.secrets, self.slow, self.reads = secrets, slow, 0

    def request(self, method: str, url: str, **_: Any) -> dict[str, Any]:
        self.reads += 1
        name = url.rsplit("/", 1)[1]
        if name in self.slow:
            time.sleep(10)
        if name not in self.secrets:
            raise ApiError(404, "NotFound", "not found")
        data = {"url": base64.b64encode(self.secrets[name].encode()).decode(), "other": "eA=="}
        return {"data": data}


@pytest.fixture
def scaler() -> Iterator[tuple[Scaler, FakeProbe, FakeKube, list[Any]]]:
    kube = FakeKube({"good": "redis://:pw@secret-host:6379/0"}, slow={"slow"})
    enqueued: list[Any] = []
    scaler = Scaler(kube, enqueued.append, policy=NetworkPolicy())  # type: ignore[arg-type]
    probe = FakeProbe()
    scaler.probes = {"redis": probe, "rabbitmq": probe}
    yield scaler, probe, kube, enqueued
    scaler.close()


def test_a_black_hole_delays_nobody_else(
    scaler: tuple[Scaler, FakeProbe, FakeKube, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bgjob.scaling.scaler.SECRET_DEADLINE_SECONDS", 1.0)
    s, probe, _, _ = scaler
    s.track(_bgj("healthy", url="redis://good:6379/0"), 0)
    for i in range(5):
        s.track(_bgj(f"hole-{i}", url=f"redis://hole-{i}:6379/0"), 0)
    s.track(_bgj("slow-secret", secret="slow"), 0)

    async def scenario() -> float:
        task = asyncio.create_task(s.run())
        await asyncio.sleep(1.2)
        probe.backlogs["redis://good:6379/0"] = 4
        changed = time.monotonic()
        while (view := s.view(("ns", "healthy"))) is None or view.replicas != 4:
            await asyncio.sleep(0.01)
        reaction = time.monotonic() - changed
        await asyncio.sleep(1.5)
        task.cancel()
        return reaction

    reaction = asyncio.run(scenario())
    assert reaction < 1.3, f"the healthy queue reacted after {reaction:.2f}s"
    hole = s.view(("ns", "hole-0"))
    assert hole is not None and hole.problem is not None
    assert hole.problem.reason == "QueueUnreachable"
    secretive = s.view(("ns", "slow-secret"))
    assert secretive is not None and secretive.problem is not None
    assert secretive.problem.reason == "SecretUnreadable"
    # One probe in flight per black hole, not one per round.
    assert probe.calls.count("redis://hole-0:6379/0") <= 2


def test_secrets_cache_only_the_referenced_key_and_leave_with_their_user(
    scaler: tuple[Scaler, FakeProbe, FakeKube, list[Any]],
) -> None:
    s, probe, kube, _ = scaler
    s.track(_bgj("reader", secret="good"), 0)
    s.track(_bgj("missing", secret="absent"), 0)

    async def scenario() -> None:
        task = asyncio.create_task(s.run())
        await asyncio.sleep(1.5)
        task.cancel()

    asyncio.run(scenario())
    assert set(s._secrets) == {("ns", "good", "url"), ("ns", "absent", "url")}
    assert s._secrets[("ns", "good", "url")][1] == "redis://:pw@secret-host:6379/0"
    assert probe.held["redis://:pw@secret-host:6379/0"] == {("ns", "reader")}
    missing = s.view(("ns", "missing"))
    assert missing is not None and missing.problem is not None
    assert missing.problem.reason == "SecretNotFound"
    s.untrack(("ns", "reader"))
    assert ("ns", "good", "url") not in s._secrets
    assert probe.held["redis://:pw@secret-host:6379/0"] == set()
    assert kube.reads <= 4


def test_a_url_in_a_secret_with_query_options_is_degraded_naming_the_field(
    scaler: tuple[Scaler, FakeProbe, FakeKube, list[Any]],
) -> None:
    s, probe, kube, _ = scaler
    kube.secrets["tuned"] = "redis://:s3cret@h:6379/0?socket_timeout=600"
    s.track(_bgj("tuned", secret="tuned"), 0)

    async def scenario() -> None:
        task = asyncio.create_task(s.run())
        await asyncio.sleep(1.2)
        task.cancel()

    asyncio.run(scenario())
    view = s.view(("ns", "tuned"))
    assert view is not None and view.problem is not None
    assert view.problem.reason == "InvalidQueueURL"
    assert "spec.trigger.queue.redis.urlFrom" in view.problem.message
    assert "socket_timeout" in view.problem.message
    assert "s3cret" not in view.problem.message
    assert probe.calls == [], "a refused URL is never dialled"


# --- the per-BackgroundJob probe error counter, as /metrics shows it --------------------


def probe_errors(namespace: str) -> dict[tuple[str, str], float]:
    """bgjob_queue_probe_errors_total of one namespace on /metrics: (name, backend) -> value."""
    page = generate_latest(REGISTRY).decode()
    return {
        (s.labels["name"], s.labels["backend"]): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == "bgjob_queue_probe_errors_total" and s.labels["namespace"] == namespace
    }


def test_each_backgroundjob_on_a_failing_queue_counts_its_failed_rounds(
    scaler: tuple[Scaler, FakeProbe, FakeKube, list[Any]],
) -> None:
    s, probe, _, _ = scaler
    for name in ("a", "b", "c"):  # three BackgroundJobs on one queue that refuses
        s.track(_bgj(name, url="redis://down:6379/0", namespace="errors-shared"), 0)
    s.track(_bgj("fine", url="redis://good:6379/0", namespace="errors-shared"), 0)

    async def scenario() -> float:
        started = time.monotonic()
        task = asyncio.create_task(s.run())
        await asyncio.sleep(2.6)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return time.monotonic() - started

    elapsed = asyncio.run(scenario())
    counts = probe_errors("errors-shared")
    rounds = {counts.get((name, "redis"), 0.0) for name in ("a", "b", "c")}
    # The same failed reads, once per BackgroundJob and round (one round a second here).
    (per_job,) = rounds
    assert 2 <= per_job <= elapsed + 1
    assert ("fine", "redis") not in counts, "a healthy broker counts no errors"
    # The three share each read: the broker saw no more calls than one reader's rounds.
    assert 1 <= probe.calls.count("redis://down:6379/0") <= per_job
    view = s.view(("errors-shared", "a"))
    assert view is not None and view.problem is not None
    assert view.problem.reason == "QueueUnreachable"


def test_the_probe_error_series_leave_with_their_backgroundjob(
    scaler: tuple[Scaler, FakeProbe, FakeKube, list[Any]],
) -> None:
    s, _, _, _ = scaler
    names = [f"gone-{i}" for i in range(50)]
    for name in names:
        s.track(_bgj(name, url=f"redis://down-{name}:6379/0", namespace="errors-gone"), 0)

    async def one_round() -> None:
        task = asyncio.create_task(s.run())
        await asyncio.sleep(0.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(one_round())
    assert set(probe_errors("errors-gone")) == {(name, "redis") for name in names}
    target = s._targets[("errors-gone", "gone-0")]
    for name in names:
        s.untrack(("errors-gone", name))
    assert probe_errors("errors-gone") == {}, "untracked BackgroundJobs keep no series"
    # A poll that lands after its BackgroundJob was untracked counts nothing.
    s._update(target, None, None, probe_failed=True)
    assert probe_errors("errors-gone") == {}


def test_a_backgroundjob_that_changes_broker_keeps_one_series(
    scaler: tuple[Scaler, FakeProbe, FakeKube, list[Any]],
) -> None:
    s, _, _, _ = scaler
    key = ("errors-moved", "mover")
    s.track(_bgj("mover", url="redis://down:6379/0", namespace=key[0]), 0)
    target = s._targets[key]
    s._update(target, None, None, probe_failed=True)
    assert probe_errors(key[0]) == {("mover", "redis"): 1}
    moved = parse(
        {
            "metadata": {"name": "mover", "namespace": key[0], "uid": "mover", "generation": 2},
            "spec": {
                "image": "w",
                "trigger": {"queue": {"rabbitmq": {"url": "amqp://down:5672/", "queue": "q"}}},
            },
        }
    )
    s.track(moved, 0)
    s._update(target, None, None, probe_failed=True)
    assert probe_errors(key[0]) == {("mover", "rabbitmq"): 1}


# --- the management API ----------------------------------------------------------------


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []
    answer: tuple[int, dict[str, str], bytes] = (200, {}, b"{}")

    def do_GET(self) -> None:
        type(self).seen.append({"path": self.path, **dict(self.headers)})
        status, headers, body = type(self).answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[tuple[int, type[Recorder]]]:
    handler = type("Handler", (Recorder,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


def _ref(amqp_host: str, port: int, scheme: str = "http") -> QueueRef:
    return QueueRef(
        "rabbitmq",
        f"amqp://app:s3cret@{amqp_host}:5672/%2F",
        "jobs",
        f"{scheme}://127.0.0.1:{port}",
        allow_insecure_management=True,
    )


def test_credentials_go_only_to_the_amqp_host(listener: tuple[int, type[Recorder]]) -> None:
    port, handler = listener
    probe = RabbitMQProbe(NetworkPolicy())
    with pytest.raises(ProbeError) as refused:
        probe.backlog(_ref("localhost", port), 1)
    assert refused.value.reason == "ManagementHostMismatch"
    assert handler.seen == []
    handler.answer = (200, {}, QUEUE_OBJECT)
    assert probe.backlog(_ref("127.0.0.1", port), 1) == 5
    expected = "Basic " + base64.b64encode(b"app:s3cret").decode()
    assert handler.seen[0]["Authorization"] == expected
    assert handler.seen[0]["path"] == "/api/queues/%2F/jobs"


QUEUE_OBJECT = b'{"name": "jobs", "vhost": "/", "messages_ready": 3, "messages_unacknowledged": 2}'
RABBITMQ_404 = b'{"error":"Object Not Found","reason":"Not Found"}'


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, b"Not Found"),  # any web server
        (404, b'{"error": "Not Found"}'),
        (200, b'{"status": "ok"}'),  # any JSON service
        (200, b"{}"),
        (200, b'{"name": "jobs", "vhost": "/"}'),  # no counts: not a backlog of 0
        (200, b'{"name": "other", "vhost": "/", "messages_ready": 1}'),
        (200, b'{"name": "jobs", "vhost": "other", "messages_ready": 1}'),
        (200, b"[]"),
        (401, b'{"error":"not_authorized"}'),
    ],
)
def test_what_is_not_this_queue_looks_like_a_closed_port(
    listener: tuple[int, type[Recorder]], status: int, body: bytes
) -> None:
    port, handler = listener
    handler.answer = (status, {}, body)
    probe = RabbitMQProbe(NetworkPolicy())
    with pytest.raises(ProbeError) as answered:
        probe.backlog(_ref("127.0.0.1", port), 1)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ProbeError) as refused:
        probe.backlog(_ref("127.0.0.1", closed_port), 1)
    assert (answered.value.reason, answered.value.public) == (
        refused.value.reason,
        refused.value.public,
    )


def test_only_rabbitmqs_own_answer_says_the_queue_does_not_exist(
    listener: tuple[int, type[Recorder]],
) -> None:
    port, handler = listener
    handler.answer = (404, {"Content-Type": "application/json"}, RABBITMQ_404)
    with pytest.raises(ProbeError) as missing:
        RabbitMQProbe(NetworkPolicy()).backlog(_ref("127.0.0.1", port), 1)
    assert missing.value.public == "queue 'jobs' does not exist on the broker"


def test_a_redirect_is_an_error_and_never_followed(
    listener: tuple[int, type[Recorder]],
) -> None:
    port, handler = listener
    handler.answer = (302, {"Location": f"http://127.0.0.1:{port}/elsewhere"}, b"")
    with pytest.raises(ProbeError) as failed:
        RabbitMQProbe(NetworkPolicy()).backlog(_ref("127.0.0.1", port), 1)
    assert failed.value.reason == "QueueUnreachable"
    assert [seen["path"] for seen in handler.seen] == ["/api/queues/%2F/jobs"]


def test_the_answer_is_bounded_in_size(listener: tuple[int, type[Recorder]]) -> None:
    port, handler = listener
    handler.answer = (200, {}, b'{"messages_ready": 1, "x": "' + b"a" * 200_000 + b'"}')
    with pytest.raises(ProbeError, match="cannot read the backlog"):
        RabbitMQProbe(NetworkPolicy()).backlog(_ref("127.0.0.1", port), 1)


def test_a_server_that_drips_is_cut_at_the_deadline() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    stop = threading.Event()

    def drip() -> None:
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.is_set():
            try:
                conn.sendall(b"X-Drip: 1\r\n")
            except OSError:
                break
            time.sleep(0.2)
        conn.close()

    threading.Thread(target=drip, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(ProbeError):
        RabbitMQProbe(NetworkPolicy()).backlog(_ref("127.0.0.1", port), 1)
    stop.set()
    server.close()
    assert time.monotonic() - started < 1.5


# --- probe threads per namespace -------------------------------------------------------


def _queue_bgj(namespace: str, name: str, url: str, interval: int) -> BackgroundJob:
    return parse(
        {
            "metadata": {"name": name, "namespace": namespace, "uid": namespace + name},
            "spec": {
                "image": "w",
                "concurrency": 10,
                "trigger": {
                    "queue": {
                        "redis": {"list": "jobs", "url": url},
                        "targetPerReplica": 1,
                        "pollingIntervalSeconds": interval,
                    }
                },
            },
        }
    )


class HangingProbe(FakeProbe):
    """'hole' URLs hang for their whole deadline (until released); counts threads in use."""

    def __init__(self) -> None:
        super().__init__()
        self.release_all = threading.Event()
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.peak = 0  # threads in this probe at once, all URLs
        self.overrun = 0.0  # how long past its deadline a black hole keeps its thread

    def backlog(self, queue: QueueRef, timeout: float) -> int:
        with self.lock:
            self.calls.append(queue.url)
            self.running[queue.url] = self.running.get(queue.url, 0) + 1
            self.most[queue.url] = max(self.most.get(queue.url, 0), self.running[queue.url])
            self.peak = max(self.peak, sum(self.running.values()))
        try:
            if "hole" in queue.url:
                self.release_all.wait(timeout + self.overrun)
                raise ProbeError("timed out")
            return self.backlogs.get(queue.url, 0)
        finally:
            with self.lock:
                self.running[queue.url] -= 1


def test_one_namespace_of_black_holes_cannot_take_the_threads_of_the_others() -> None:
    enqueued: list[Any] = []
    s = Scaler(None, enqueued.append, policy=NetworkPolicy())  # type: ignore[arg-type]
    probe = HangingProbe()
    s.probes = {"redis": probe, "rabbitmq": probe}
    good_url = "redis://good:6379/0"
    probe.backlogs[good_url] = 3
    s.track(_queue_bgj("good", "ok", good_url, 1), 0)
    for i in range(100):  # more black holes than the pool has threads
        s.track(_queue_bgj("evil", f"e{i}", f"redis://u{i}@hole:6379/0", 10), 0)
    views: list[Any] = []

    async def scenario() -> int:
        task = asyncio.create_task(s.run())
        most = 0
        for _ in range(40):
            await asyncio.sleep(0.1)
            views.append(s.view(("good", "ok")))
            with probe.lock:
                evil = sum(n for url, n in probe.running.items() if "hole" in url)
            most = max(most, evil)
        task.cancel()
        return most

    try:
        most_evil = asyncio.run(scenario())
    finally:
        probe.release_all.set()
        s.close()
    assert most_evil <= PROBE_THREADS_PER_NAMESPACE, f"{most_evil} threads for one namespace"
    seen = [(v.backlog, v.problem.reason if v.problem else None) for v in views[12:]]
    assert seen == [(3, None)] * len(seen), seen
    assert probe.calls.count(good_url) >= 3, "the healthy queue was polled every second"


def test_a_late_target_never_takes_a_second_thread() -> None:
    s = Scaler(None, lambda _: None, policy=NetworkPolicy())  # type: ignore[arg-type]
    probe = HangingProbe()
    s.probes = {"redis": probe, "rabbitmq": probe}
    probe.overrun = 3.0
    s.track(_queue_bgj("ns", "late", "redis://hole:6379/0", 1), 0)

    async def scenario() -> None:
        task = asyncio.create_task(s.run())
        await asyncio.sleep(0.5)
        # Its URL changes (a rotated Secret) while its first probe still hangs.
        s._targets[("ns", "late")].source = dataclasses.replace(
            s._targets[("ns", "late")].source, url="redis://other@hole:6379/0"
        )
        await asyncio.sleep(2.5)
        task.cancel()

    try:
        asyncio.run(scenario())
    finally:
        probe.release_all.set()
        s.close()
    assert probe.peak == 1, "a second thread while the first still hung"
    assert len(probe.calls) <= 2, probe.calls


def test_the_thread_gate_is_fair_and_bounded() -> None:
    async def scenario() -> list[str]:
        gate = ThreadGate(total=3, per_namespace=2)
        order: list[str] = []
        assert await gate.acquire("a", 1) and await gate.acquire("a", 1)
        assert not await gate.acquire("a", 0.05), "a namespace gets no more than its share"
        assert await gate.acquire("b", 1)
        waiting = [asyncio.create_task(_take(gate, ns, order)) for ns in ("a", "b", "c")]
        await asyncio.sleep(0.01)
        gate.release("a")  # the pool is full: the freed thread goes to the one with fewest
        await asyncio.sleep(0.01)
        gate.release("b")
        await asyncio.sleep(0.01)
        gate.release("a")
        await asyncio.gather(*waiting)
        return order

    assert asyncio.run(scenario()) == ["c", "b", "a"]


async def _take(gate: ThreadGate, namespace: str, order: list[str]) -> None:
    assert await gate.acquire(namespace, 2)
    order.append(namespace)
