"""Queue workers follow their backlog, against real Redis and RabbitMQ servers."""

from __future__ import annotations

import json
import time
from typing import Any

import pika
import redis

from tests.e2e.brokers import RabbitMQServer, RedisServer
from tests.e2e.support import Kubectl, bgjob, condition, events, eventually, secret


def _replicas(k: Kubectl, ns: str, name: str, kind: str = "deployment") -> int:
    return int(k.get(kind, name, ns)["spec"]["replicas"])  # type: ignore[index]


def _status(k: Kubectl, ns: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = k.get("bgj", name, ns)["status"]  # type: ignore[index]
    return status


def _redis_worker(name: str, url: str, queue: str, **queue_spec: Any) -> dict[str, Any]:
    return bgjob(
        name,
        {
            "trigger": {"queue": {"redis": {"url": url, "list": queue}, **queue_spec}},
            "concurrency": 4,
        },
    )


def test_redis_backlog_scales_up_at_once_and_to_zero_after_the_cooldown(
    kubectl: Kubectl, ns: str, redis_server: RedisServer
) -> None:
    broker = redis.Redis.from_url(redis_server.url)
    queue = f"{ns}-thumbs"
    kubectl.apply(
        _redis_worker("thumbs", redis_server.url, queue, targetPerReplica=5, cooldownSeconds=8),
        ns,
    )
    kubectl.wait("bgj/thumbs", "condition=Ready", ns)
    assert _replicas(kubectl, ns, "thumbs") == 0
    assert _status(kubectl, ns, "thumbs")["state"] == "Idle"

    broker.rpush(queue, *[f"image-{i}" for i in range(12)])
    pushed = time.monotonic()
    eventually(lambda: _replicas(kubectl, ns, "thumbs") == 3, timeout=10, interval=0.1)
    assert time.monotonic() - pushed < 5, "took longer than a couple of polling intervals"
    kubectl.wait("bgj/thumbs", "condition=Ready", ns)
    status = eventually(lambda: (s := _status(kubectl, ns, "thumbs"))["queueLength"] == 12 and s)
    assert status["state"] == "Running"
    assert status["readyReplicas"] == 3
    assert any(
        e["reason"] == "Scaled" and "0→3" in e["message"] and "backlog 12" in e["message"]
        for e in events(kubectl, ns, "thumbs")
    )

    # More backlog than concurrency allows: capped at concurrency.
    broker.rpush(queue, *[f"image-{i}" for i in range(40)])
    eventually(lambda: _replicas(kubectl, ns, "thumbs") == 4, timeout=10, interval=0.1)

    broker.delete(queue)
    drained = time.monotonic()
    time.sleep(4)
    assert _replicas(kubectl, ns, "thumbs") == 4, "scaled down before the cooldown"
    eventually(lambda: _replicas(kubectl, ns, "thumbs") == 0, timeout=20, interval=0.2)
    assert time.monotonic() - drained >= 7
    eventually(lambda: _status(kubectl, ns, "thumbs")["state"] == "Idle")


def test_activation_threshold_keeps_a_small_backlog_at_zero(
    kubectl: Kubectl, ns: str, redis_server: RedisServer
) -> None:
    broker = redis.Redis.from_url(redis_server.url)
    queue = f"{ns}-lazy"
    kubectl.apply(_redis_worker("lazy", redis_server.url, queue, activationThreshold=3), ns)
    kubectl.wait("bgj/lazy", "condition=Ready", ns)
    broker.rpush(queue, "a", "b", "c")
    eventually(lambda: _status(kubectl, ns, "lazy").get("queueLength") == 3, timeout=15)
    assert _replicas(kubectl, ns, "lazy") == 0
    broker.rpush(queue, "d")
    eventually(lambda: _replicas(kubectl, ns, "lazy") == 1, timeout=10, interval=0.2)


def test_singleton_queue_worker_is_a_statefulset_of_at_most_one(
    kubectl: Kubectl, ns: str, redis_server: RedisServer
) -> None:
    broker = redis.Redis.from_url(redis_server.url)
    queue = f"{ns}-solo"
    manifest = _redis_worker("solo", redis_server.url, queue)
    manifest["spec"].update(singleton=True, concurrency=1)
    kubectl.apply(manifest, ns)
    kubectl.wait("bgj/solo", "condition=Ready", ns)
    assert _replicas(kubectl, ns, "solo", "statefulset") == 0
    broker.rpush(queue, *range(30))
    eventually(lambda: _replicas(kubectl, ns, "solo", "statefulset") == 1, timeout=10)
    time.sleep(2)
    assert _replicas(kubectl, ns, "solo", "statefulset") == 1


def test_rabbitmq_with_credentials_from_a_secret(
    kubectl: Kubectl, ns: str, rabbitmq_server: RabbitMQServer
) -> None:
    queue = f"{ns}-mail"
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_server.url))
    channel = connection.channel()
    channel.queue_declare(queue=queue)
    kubectl.apply(secret("rabbit", url=rabbitmq_server.url), ns)
    kubectl.apply(
        bgjob(
            "mailer",
            {
                "trigger": {
                    "queue": {
                        "rabbitmq": {
                            "urlFrom": {"secretKeyRef": {"name": "rabbit", "key": "url"}},
                            "queue": queue,
                        },
                        "targetPerReplica": 5,
                    }
                },
                "concurrency": 5,
            },
        ),
        ns,
    )
    kubectl.wait("bgj/mailer", "condition=Ready", ns)
    for i in range(7):
        channel.basic_publish(exchange="", routing_key=queue, body=f"mail-{i}".encode())
    eventually(lambda: _replicas(kubectl, ns, "mailer") == 2, timeout=10, interval=0.2)
    eventually(lambda: _status(kubectl, ns, "mailer").get("queueLength") == 7)
    channel.queue_purge(queue)
    connection.close()
    # The password is in the Secret only: never in status nor in Events.
    seen = json.dumps(kubectl.get("bgj", "mailer", ns)) + json.dumps(events(kubectl, ns, "mailer"))
    assert "guest:guest" not in seen


def test_an_unreachable_broker_holds_replicas_and_recovers(kubectl: Kubectl, ns: str) -> None:
    server = RedisServer()
    server.start()
    try:
        broker = redis.Redis.from_url(server.url)
        broker.rpush("jobs", *range(10))
        kubectl.apply(_redis_worker("fragile", server.url, "jobs", cooldownSeconds=0), ns)
        eventually(lambda: _replicas(kubectl, ns, "fragile") == 2, timeout=15)
        server.stop()
        kubectl.wait("bgj/fragile", "condition=Degraded", ns, timeout=20)
        degraded = condition(kubectl.get("bgj", "fragile", ns), "Degraded")
        assert degraded["reason"] == "QueueUnreachable"  # type: ignore[index]
        assert _status(kubectl, ns, "fragile")["state"] == "Degraded"
        time.sleep(3)
        assert _replicas(kubectl, ns, "fragile") == 2, "scaled on missing data"

        server.start()  # same port, empty list: recovers, then scales to zero
        eventually(
            lambda: condition(kubectl.get("bgj", "fragile", ns), "Degraded")["status"] == "False",  # type: ignore[index]
            timeout=20,
        )
        eventually(lambda: _replicas(kubectl, ns, "fragile") == 0, timeout=20)
        assert any(e["reason"] == "Recovered" for e in events(kubectl, ns, "fragile"))
    finally:
        server.cleanup()


def test_a_missing_secret_is_degraded_until_it_appears(
    kubectl: Kubectl, ns: str, redis_server: RedisServer
) -> None:
    kubectl.apply(
        bgjob(
            "secretive",
            {
                "trigger": {
                    "queue": {
                        "redis": {
                            "urlFrom": {"secretKeyRef": {"name": "later", "key": "url"}},
                            "list": "x",
                        }
                    }
                }
            },
        ),
        ns,
    )
    kubectl.wait("bgj/secretive", "condition=Degraded", ns, timeout=20)
    bgj = kubectl.get("bgj", "secretive", ns)
    assert condition(bgj, "Degraded")["reason"] == "SecretNotFound"  # type: ignore[index]
    assert condition(bgj, "Stalled")["status"] == "True"  # type: ignore[index]
    kubectl.apply(secret("later", url=redis_server.url), ns)
    kubectl.wait("bgj/secretive", "condition=Ready", ns, timeout=60)


def test_backgroundjobs_sharing_a_queue_share_one_probe(kubectl: Kubectl, ns: str) -> None:
    server = RedisServer()  # its own server, so its command counts are ours alone
    server.start()
    try:
        broker = redis.Redis.from_url(server.url)
        for i in range(5):
            kubectl.apply(_redis_worker(f"shared-{i}", server.url, "shared"), ns)
        for i in range(5):
            kubectl.wait(f"bgj/shared-{i}", "condition=Ready", ns)

        def llen_calls() -> int:
            stats = broker.info("commandstats").get("cmdstat_llen") or {}
            return int(stats.get("calls", 0))

        before = llen_calls()
        time.sleep(6)
        rate = (llen_calls() - before) / 6
        # Five BackgroundJobs polling one list every second: one read a second, not five.
        assert 0.5 <= rate <= 1.5, f"{rate:.1f} LLEN/s"
    finally:
        server.cleanup()


def test_rabbitmq_management_api_counts_messages_in_flight(
    kubectl: Kubectl, ns: str, rabbitmq_server: RabbitMQServer
) -> None:
    queue = f"{ns}-busy"
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_server.url))
    channel = connection.channel()
    channel.queue_declare(queue=queue)
    for i in range(6):
        channel.basic_publish(exchange="", routing_key=queue, body=f"job-{i}".encode())
    # A worker holds 4 messages unacknowledged: AMQP alone would see a backlog of 2.
    channel.basic_qos(prefetch_count=4)
    held: list[int] = []
    channel.basic_consume(queue, lambda ch, method, props, body: held.append(method.delivery_tag))
    deadline = time.monotonic() + 10
    while len(held) < 4 and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.2)
    assert len(held) == 4
    kubectl.apply(secret("rabbit", url=rabbitmq_server.url), ns)
    kubectl.apply(
        bgjob(
            "busy",
            {
                "trigger": {
                    "queue": {
                        "rabbitmq": {
                            "urlFrom": {"secretKeyRef": {"name": "rabbit", "key": "url"}},
                            "queue": queue,
                            "managementUrl": rabbitmq_server.management_url,
                            # The test bed's management API is plain http on loopback.
                            "allowInsecureManagement": True,
                        },
                        "targetPerReplica": 3,
                    }
                },
                "concurrency": 5,
            },
        ),
        ns,
    )
    try:
        eventually(lambda: _status(kubectl, ns, "busy").get("queueLength") == 6, timeout=30)
        eventually(lambda: _replicas(kubectl, ns, "busy") == 2, timeout=10, interval=0.2)
    finally:
        connection.close()
