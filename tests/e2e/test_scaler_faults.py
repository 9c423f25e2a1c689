"""The queue scaler under faults and hostile input, on the real control plane with real
brokers: black holes next to healthy queues, rotated credentials, a management API
somewhere else, and URLs the API server must refuse."""

from __future__ import annotations

import base64
import http.server
import json
import math
import os
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import yaml
from kubernetes import client, config, watch

from tests.e2e.brokers import BlackHole, RedisServer, free_port
from tests.e2e.support import (
    Kubectl,
    Operator,
    bgjob,
    condition,
    events,
    eventually,
    restricted_namespace,
    secret,
)
from tests.unit.url_cases import BROKER_URLS, MANAGEMENT_URLS, broker_spec, management_spec

GENERIC = "cannot read the backlog from the broker"


def _queue_worker(name: str, queue: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return bgjob(name, {"trigger": {"queue": {**queue, **settings}}, "concurrency": 3})


def _replicas(k: Kubectl, ns: str, name: str) -> int:
    return int(k.get("deployment", name, ns)["spec"]["replicas"])  # type: ignore[index]


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


@pytest.fixture
def other_ns(kubectl: Kubectl, operator: Operator) -> Iterator[str]:
    """A second tenant's namespace."""
    name = f"e2e-{secrets.token_hex(3)}"
    kubectl.apply(restricted_namespace(name), "default")
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


class ReplicaWatch:
    """Deployments' spec.replicas in one namespace, as the API server's watch delivers them,
    with the time each value was seen."""

    def __init__(self, kubectl: Kubectl, namespace: str) -> None:
        api_client = config.new_client_from_config(config_file=kubectl.kubeconfig)
        self.apps = client.AppsV1Api(api_client)
        self.namespace = namespace
        self.seen: dict[str, list[tuple[float, int]]] = {}
        self.changed = threading.Condition()
        self.watch = watch.Watch()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        stream = self.watch.stream(
            self.apps.list_namespaced_deployment, self.namespace, timeout_seconds=1800
        )
        try:
            for event in stream:
                item = event["object"]
                with self.changed:
                    history = self.seen.setdefault(item.metadata.name, [])
                    history.append((time.monotonic(), int(item.spec.replicas or 0)))
                    self.changed.notify_all()
        except Exception:  # stopped: the stream's connection is cut
            if not self.stopped:
                raise

    stopped = False

    def reached(self, name: str, replicas: int, since: float, timeout: float = 20) -> float:
        """When ``name`` first showed ``replicas`` after ``since``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for when, value in self.seen.get(name, []):
                    if when >= since and value == replicas:
                        return when
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{name} never reached {replicas} replicas")
                self.changed.wait(left)

    def stop(self) -> None:
        self.stopped = True
        self.watch.stop()


def _reactions(
    broker: redis.Redis, lists: dict[str, str], replicas: ReplicaWatch, trials: int
) -> list[float]:
    """Change every healthy backlog at once, ``trials`` times; the time until each workload
    shows the replicas its backlog calls for (targetPerReplica 1, no cooldown)."""
    samples: list[float] = []
    for trial in range(trials):
        wanted = (trial % 3) + 1
        with broker.pipeline(transaction=True) as pipe:
            for queue in lists.values():
                pipe.delete(queue)
                pipe.rpush(queue, *range(wanted))
            pipe.execute()
        changed = time.monotonic()
        for name in lists:
            samples.append(replicas.reached(name, wanted, changed) - changed)
    return samples


def test_black_holes_do_not_slow_healthy_queues_in_other_namespaces(
    kubectl: Kubectl, ns: str, other_ns: str, redis_server: RedisServer
) -> None:
    broker = redis.Redis.from_url(redis_server.url)
    lists = {f"healthy-{i}": f"{ns}-healthy-{i}" for i in range(3)}
    for name, queue in lists.items():
        worker = _queue_worker(
            name,
            {"redis": {"url": redis_server.url, "list": queue}},
            targetPerReplica=1,
            cooldownSeconds=0,
        )
        kubectl.apply(worker, ns)
    for name in lists:
        kubectl.wait(f"bgj/{name}", "condition=Ready", ns)
    replicas = ReplicaWatch(kubectl, ns)
    holes = [BlackHole() for _ in range(4)]
    try:
        _reactions(broker, lists, replicas, trials=3)  # warm up
        without = _reactions(broker, lists, replicas, trials=12)

        # Another tenant: two black-hole Redis servers, two black-hole AMQP brokers, a
        # refused port and the cloud metadata address.
        faulty = {
            "hole-redis-0": {"redis": {"url": f"redis://127.0.0.1:{holes[0].port}/0", "list": "x"}},
            "hole-redis-1": {"redis": {"url": f"redis://127.0.0.1:{holes[1].port}/0", "list": "x"}},
            "hole-amqp-0": {
                "rabbitmq": {"url": f"amqp://127.0.0.1:{holes[2].port}/", "queue": "x"}
            },
            "hole-amqp-1": {
                "rabbitmq": {"url": f"amqp://127.0.0.1:{holes[3].port}/", "queue": "x"}
            },
            "refused": {"redis": {"url": f"redis://127.0.0.1:{free_port()}/0", "list": "x"}},
            "metadata": {"redis": {"url": "redis://169.254.169.254:6379/0", "list": "x"}},
        }
        for name, queue in faulty.items():
            kubectl.apply(_queue_worker(name, queue), other_ns)
        for name in faulty:
            kubectl.wait(f"bgj/{name}", "condition=Degraded", other_ns, timeout=60)

        with_holes = _reactions(broker, lists, replicas, trials=12)
        # The figures for the closing note.
        print(
            f"healthy reaction p95: {_p95(without):.3f}s without black holes, "
            f"{_p95(with_holes):.3f}s with 4 black holes (n={len(without)}/{len(with_holes)}); "
            f"p50 {sorted(without)[len(without) // 2]:.3f}s / "
            f"{sorted(with_holes)[len(with_holes) // 2]:.3f}s"
        )
        assert _p95(with_holes) <= 1.5 * _p95(without), (without, with_holes)

        # Refused, timed out, denied, not a broker: one reason, one message.
        degraded = {
            name: condition(kubectl.get("bgj", name, other_ns), "Degraded") for name in faulty
        }
        assert {(c["reason"], c["message"]) for c in degraded.values() if c} == {
            ("QueueUnreachable", degraded["refused"]["message"])  # type: ignore[index]
        }
        assert GENERIC in degraded["refused"]["message"]  # type: ignore[index]
    finally:
        replicas.stop()
        for hole in holes:
            hole.close()


@pytest.mark.timeout(900)
def test_rotated_credentials_resume_scaling_without_leaking_descriptors(
    kubectl: Kubectl, ns: str, operator: Operator
) -> None:
    assert operator.process is not None
    fd_dir = f"/proc/{operator.process.pid}/fd"
    password = f"rotation-0-{secrets.token_hex(4)}"
    server = RedisServer(password=password)
    server.start()
    try:
        kubectl.apply(secret("broker", url=server.url), ns)
        worker = _queue_worker(
            "rotating",
            {"redis": {"urlFrom": {"secretKeyRef": {"name": "broker", "key": "url"}}, "list": "w"}},
            targetPerReplica=1,
            cooldownSeconds=0,
        )
        kubectl.apply(worker, ns)
        kubectl.wait("bgj/rotating", "condition=Ready", ns)
        broker = redis.Redis(port=server.port, password=password)
        broker.rpush("w", 1)
        eventually(lambda: _replicas(kubectl, ns, "rotating") == 1, timeout=20, interval=0.2)
        time.sleep(2)
        before = len(os.listdir(fd_dir))
        took: list[float] = []
        for rotation in range(1, 51):
            password = f"rotation-{rotation}-{secrets.token_hex(4)}"
            broker.config_set("requirepass", password)
            broker = redis.Redis(port=server.port, password=password)
            broker.client_kill_filter(_type="normal", skipme=True)  # the old sessions end
            server.password = password
            kubectl.apply(secret("broker", url=server.url), ns)
            rotated = time.monotonic()
            wanted = 2 if rotation % 2 else 1
            with broker.pipeline(transaction=True) as pipe:
                pipe.delete("w")
                pipe.rpush("w", *range(wanted))
                pipe.execute()
            eventually(
                lambda want=wanted: _replicas(kubectl, ns, "rotating") == want,  # type: ignore[misc]
                timeout=30,
                interval=0.2,
            )
            took.append(time.monotonic() - rotated)
        time.sleep(3)  # clients released by the last rotation close in the background
        after = len(os.listdir(fd_dir))
        print(
            f"50 rotations: operator fds {before} before, {after} after; scaling resumed after "
            f"p50 {sorted(took)[25]:.2f}s, max {max(took):.2f}s"
        )
        assert after <= before + 4, f"descriptors grew from {before} to {after}"
        seen = json.dumps(kubectl.get("bgj", "rotating", ns)) + json.dumps(
            events(kubectl, ns, "rotating")
        )
        assert "rotation-" not in seen, "a password reached status or Events"
    finally:
        server.cleanup()


class Recorder(http.server.BaseHTTPRequestHandler):
    """A management API impostor on 127.0.0.1: records every request, answers 401."""

    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(
            {"path": self.path, **{k.lower(): v for k, v in self.headers.items()}}
        )
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_management_url_elsewhere_receives_no_credentials(kubectl: Kubectl, ns: str) -> None:
    handler = type("Handler", (Recorder,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    listener = f"http://127.0.0.1:{server.server_address[1]}"
    password = f"never-sent-{secrets.token_hex(4)}"
    try:
        # The AMQP URL (in a Secret) names localhost; the management API another host.
        kubectl.apply(secret("amqp", url=f"amqp://app:{password}@localhost:5672/%2F"), ns)
        elsewhere = {
            "urlFrom": {"secretKeyRef": {"name": "amqp", "key": "url"}},
            "queue": "stolen",
            "managementUrl": listener,
            "allowInsecureManagement": True,
        }
        kubectl.apply(_queue_worker("exfiltrate", {"rabbitmq": elsewhere}), ns)
        # Control: the same listener as the management API of its own host is called.
        own = {
            "url": "amqp://127.0.0.1:5672/%2F",
            "queue": "own",
            "managementUrl": listener,
            "allowInsecureManagement": True,
        }
        kubectl.apply(_queue_worker("control", {"rabbitmq": own}), ns)
        kubectl.wait("bgj/exfiltrate", "condition=Degraded", ns, timeout=60)
        kubectl.wait("bgj/control", "condition=Degraded", ns, timeout=60)
        eventually(lambda: any("/own" in seen["path"] for seen in handler.seen), timeout=20)
        time.sleep(3)  # several more polling intervals of the exfiltrating one

        degraded = condition(kubectl.get("bgj", "exfiltrate", ns), "Degraded")
        assert degraded is not None
        assert degraded["reason"] == "ManagementHostMismatch"
        token = base64.b64encode(f"app:{password}".encode()).decode()
        recorded = json.dumps(handler.seen)
        assert password not in recorded and token not in recorded
        assert not any("/stolen" in seen["path"] for seen in handler.seen)
        assert all(
            "authorization" not in seen or token not in seen["authorization"]
            for seen in handler.seen
        )
        control = condition(kubectl.get("bgj", "control", ns), "Degraded")
        assert control is not None and control["reason"] == "QueueUnreachable"
        print(f"management impostor: {len(handler.seen)} requests, all from the control")
        shown = json.dumps(kubectl.get("bgj", "exfiltrate", ns)) + json.dumps(
            events(kubectl, ns, "exfiltrate")
        )
        assert password not in shown
    finally:
        server.shutdown()
        server.server_close()


def test_admission_refuses_timeout_options_naming_the_field(kubectl: Kubectl, ns: str) -> None:
    worker = _queue_worker(
        "tuned", {"redis": {"url": "redis://127.0.0.1:6379/0?socket_timeout=600", "list": "x"}}
    )
    result = kubectl.try_apply(worker, ns)
    assert result.returncode != 0
    assert "spec.trigger.queue.redis.url" in result.stderr
    assert "query options" in result.stderr
    assert kubectl.get("bgj", "tuned", ns) is None


def test_the_api_server_and_python_agree_on_every_url_in_the_table(
    kubectl: Kubectl, ns: str
) -> None:
    cases: list[tuple[str, dict[str, Any], bool]] = []
    for i, (backend, url, accepted) in enumerate(BROKER_URLS):
        cases.append((f"url-{i}", broker_spec(backend, url), accepted))
    for i, (management_url, insecure, accepted) in enumerate(MANAGEMENT_URLS):
        cases.append((f"mgmt-{i}", management_spec(management_url, insecure), accepted))
    documents = [
        {"apiVersion": "bgjob.dev/v1alpha1", "kind": "BackgroundJob", "metadata": {"name": name},
         "spec": spec}
        for name, spec, _ in cases
    ]  # fmt: skip
    result = kubectl.run(
        "apply", "--dry-run=server", "-n", ns, "-f", "-",
        stdin=yaml.safe_dump_all(documents), check=False,
    )  # fmt: skip
    admitted = {
        line.split()[0].rsplit("/", 1)[1] for line in result.stdout.splitlines() if line.strip()
    }
    disagreements = [
        (name, spec, expected) for name, spec, expected in cases if (name in admitted) != expected
    ]
    assert disagreements == [], result.stderr
    print(f"URL table: {len(cases)} cases, API server and Python agree on all")
