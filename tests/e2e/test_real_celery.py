"""Celery workers in real pods on the real kubelet node (images/celery-worker: celery 5.6
with kombu's Redis transport and the example app, examples/celery/tasks.py) against a
real Redis.

Tasks queued with no worker wake the pool and run once; a countdown task wakes it at
once and keeps one worker (the task sits unacknowledged in its memory) until it has
run; long tasks drain through scale-in steps and every email started is sent, with
tasks in hand keeping replicas up through the cooldown. Celery keeps no worker
registry in Redis, so the operator cannot tell which pod is busy: a scale-in may send
SIGTERM to a busy pod, and Celery's warm shutdown finishes the task in hand within the
grace period, which is checked here on a real pod.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
import redis
from celery import Celery

from tests.e2e.brokers import RedisServer
from tests.e2e.support import Kubectl, PodWatch, RealNode, bgjob, eventually, on_real_node, secret

pytestmark = pytest.mark.real_node

TASK = "tasks.send_welcome_email"


def _replicas(kubectl: Kubectl, ns: str) -> int:
    deployment = kubectl.get("deployment", "emails", ns)
    return -1 if deployment is None else int(deployment["spec"]["replicas"])


def _pods(kubectl: Kubectl, ns: str) -> list[str]:
    pods = kubectl.json("get", "pods", "-n", ns, "-l", "app.kubernetes.io/instance=emails")
    return [p["metadata"]["name"] for p in pods["items"]]


def _outbox(broker: redis.Redis, key: str) -> list[tuple[float, str, str, str]]:
    """(time, pod, started|sent|SIGTERM, user|how) in order."""
    entries = []
    for raw in broker.lrange(key, 0, -1):  # type: ignore[union-attr]
        at, pod, what, who = raw.decode().split(" ")
        entries.append((float(at), pod, what, who))
    return entries


def _emails_only(entries: list[tuple[float, str, str, str]]) -> list[tuple[float, str, str, str]]:
    """Without the workers' own shutdown entries (a pod stopped by a scale-in logs
    `SIGTERM Warm`, examples/celery/tasks.py)."""
    return [e for e in entries if e[2] in ("started", "sent")]


def _in_hand(broker: redis.Redis, key: str) -> int:
    outbox = _outbox(broker, key)
    return sum(e[2] == "started" for e in outbox) - sum(e[2] == "sent" for e in outbox)


def _db(url: str, db: int) -> str:
    """The URL on its own database: kombu keeps one `unacked` hash per database."""
    return f"{url.rsplit('/', 1)[0]}/{db}"


def _producer(url: str) -> Celery:
    """A producer of the example's task, by name (the app need not be importable)."""
    return Celery("producer", broker=url)


def _emails(
    kubectl: Kubectl, ns: str, real_node: RealNode, url: str, grace: int, **queue_spec: Any
) -> dict[str, Any]:
    kubectl.apply(secret("emails-redis", url=url), ns)
    url_from = {"secretKeyRef": {"name": "emails-redis", "key": "url"}}
    queue = f"{ns}-emails"
    return bgjob(
        "emails",
        {
            "image": real_node.image("celery-worker:1"),
            # Celery's default node name, celery@<hostname>: the pod's name.
            "command": [
                *("python3", "-m", "celery", "--app", "tasks", "worker", "--queues", queue),
                *("--pool", "solo", "--without-gossip", "--without-mingle", "--loglevel", "INFO"),
            ],
            "env": [
                {"name": "CELERY_BROKER_URL", "valueFrom": url_from},
                {"name": "WELCOME_OUTBOX", "value": f"{ns}-outbox"},
            ],
            "trigger": {"queue": {"celery": {"urlFrom": url_from, "queue": queue}, **queue_spec}},
            "concurrency": 3,
            "shutdown": {"gracePeriodSeconds": grace},
            "template": {"spec": on_real_node()},
        },
    )


def test_tasks_queued_with_no_worker_run_once_and_a_countdown_task_keeps_its_worker(
    kubectl: Kubectl, ns: str, real_node: RealNode, bridge_redis_server: RedisServer
) -> None:
    url = _db(bridge_redis_server.url, 7)
    broker = redis.Redis.from_url(url, socket_timeout=5)
    outbox, queue = f"{ns}-outbox", f"{ns}-emails"
    pod_url = _db(bridge_redis_server.url_at(real_node.bridge_address), 7)
    kubectl.apply(
        _emails(kubectl, ns, real_node, pod_url, 5, targetPerReplica=2, cooldownSeconds=3), ns
    )
    kubectl.wait("bgj/emails", "condition=Ready", ns)
    assert _replicas(kubectl, ns) == 0
    producer = _producer(url)

    queued = time.time()
    users = ["user-1", "user-2", "user-3"]
    for user in users:
        producer.send_task(TASK, (user, 1.0), queue=queue)
    eventually(lambda: sum(e[2] == "sent" for e in _outbox(broker, outbox)) == 3, timeout=90)
    first = min(e[0] for e in _outbox(broker, outbox))
    print(f"queued -> first task started on a real Celery worker: {first - queued:.2f} s")
    eventually(lambda: _replicas(kubectl, ns) == 0, timeout=40, interval=0.3)
    entries = _outbox(broker, outbox)
    assert sorted(who for _, _, what, who in entries if what == "started") == users, entries
    assert sorted(who for _, _, what, who in entries if what == "sent") == users, entries
    assert all(pod.startswith("emails-") for _, pod, _, _ in entries), "ran in pods of the pool"

    # A countdown task waits in the list with no worker: it wakes the pool at once.
    # The worker takes it and holds it in memory, unacknowledged, until it is due:
    # the operator counts it, so one worker stays up past the 3 s cooldown.
    broker.delete(outbox)
    sent = time.time()
    producer.send_task(TASK, ("user-later", 0.5), queue=queue, countdown=14)
    eventually(lambda: _replicas(kubectl, ns) == 1, timeout=10, interval=0.2)
    woke = time.time() - sent
    eventually(lambda: broker.hlen("unacked") == 1, timeout=30, interval=0.2)
    held = time.time() - sent
    while time.time() < sent + 13:
        assert broker.llen(queue) == 0 and broker.hlen("unacked") == 1
        assert _replicas(kubectl, ns) == 1, "the worker holding the countdown task left"
        time.sleep(0.5)
    eventually(lambda: len(_emails_only(_outbox(broker, outbox))) == 2, timeout=20, interval=0.2)
    print(f"countdown 14 s: pool woken after {woke:.2f} s, held by a worker after {held:.2f} s")
    (started_at, pod, what, who), _ = _emails_only(_outbox(broker, outbox))
    assert (what, who) == ("started", "user-later")
    assert started_at >= sent + 14, "the countdown was honoured"
    eventually(lambda: _replicas(kubectl, ns) == 0, timeout=40, interval=0.3)
    entries = [e for e in _outbox(broker, outbox) if e[1] == pod]
    # Run once, by the worker that held it, stopped only after it had run.
    assert [e[2:] for e in entries][:2] == [("started", "user-later"), ("sent", "user-later")]
    assert len(_emails_only(_outbox(broker, outbox))) == 2, _outbox(broker, outbox)


def test_long_tasks_drain_through_scale_in_and_every_email_started_is_sent(
    kubectl: Kubectl, ns: str, real_node: RealNode, bridge_redis_server: RedisServer
) -> None:
    url = _db(bridge_redis_server.url, 8)
    broker = redis.Redis.from_url(url, socket_timeout=5)
    outbox, queue = f"{ns}-outbox", f"{ns}-emails"
    pod_url = _db(bridge_redis_server.url_at(real_node.bridge_address), 8)
    # The grace period is above the longest task: a busy pod removed by a scale-in
    # (the operator cannot tell Celery's busy pods) finishes its task.
    kubectl.apply(
        _emails(kubectl, ns, real_node, pod_url, 15, targetPerReplica=1, cooldownSeconds=2), ns
    )
    kubectl.wait("bgj/emails", "condition=Ready", ns)
    producer = _producer(url)
    users = [f"user-{i:02d}" for i in range(6)]
    # About 10 s each, unequal: workers fall idle one by one while others still hold a
    # task, so the pool steps down while tasks are in hand.
    for i, user in enumerate(users):
        producer.send_task(TASK, (user, 8.0 + (i % 3) * 2.0), queue=queue)
    samples: list[tuple[int, int]] = []

    def all_sent() -> bool:
        before = _in_hand(broker, outbox)
        replicas = _replicas(kubectl, ns)
        samples.append((replicas, min(before, _in_hand(broker, outbox))))
        return sum(e[2] == "sent" for e in _outbox(broker, outbox)) == len(users)

    eventually(all_sent, timeout=150, interval=0.5)
    eventually(lambda: _replicas(kubectl, ns) == 0, timeout=60, interval=0.3)
    entries = _outbox(broker, outbox)
    started = sorted(who for _, _, what, who in entries if what == "started")
    sent = sorted(who for _, _, what, who in entries if what == "sent")
    assert started == sent == users, entries
    # Tasks in hand (unacknowledged) kept their workers through every 2 s cooldown.
    assert all(replicas >= held for replicas, held in samples), samples
    downs = sum(1 for (a, _), (b, _) in itertools.pairwise(samples) if b < a)
    print(f"(replicas, tasks in hand) sampled: {samples}")
    assert downs >= 2, f"fewer than two scale-in steps: {samples}"

    # Warm shutdown on a real pod: SIGTERM to a worker in the middle of a 6 s task
    # (once the pods of the scale-in are gone: a pod in its last moment before
    # SIGTERM may still take a task, and would finish it the same way).
    eventually(lambda: not _pods(kubectl, ns), timeout=60, interval=0.3)
    broker.delete(outbox)
    producer.send_task(TASK, ("user-sigterm", 6.0), queue=queue)
    (_, pod, _, _) = eventually(
        lambda: _emails_only(_outbox(broker, outbox))[:1], timeout=60, interval=0.2
    )[0]
    watch = PodWatch(kubectl, ns, pod)
    try:
        deleted = time.time()
        kubectl.run("delete", "pod", pod, "-n", ns, "--wait=false")
        eventually(watch.terminated, timeout=30, interval=0.2)
        terminated = watch.terminated()
    finally:
        watch.stop()
    entries = [e for e in _outbox(broker, outbox) if e[1] == pod]
    timeline = [(round(at - deleted, 2), what, who) for at, _, what, who in entries]
    print(f"SIGTERM mid-task, seconds after the delete: {timeline}")
    assert [(p, what, who) for _, p, what, who in entries] == [
        (pod, "started", "user-sigterm"),
        (pod, "SIGTERM", "Warm"),
        (pod, "sent", "user-sigterm"),
    ], entries
    assert entries[1][0] >= deleted and entries[2][0] - deleted <= 15, "within the grace period"
    assert terminated is not None and terminated["exitCode"] == 0, terminated
    # Acknowledged when finished: not delivered again to the replacement pod.
    eventually(lambda: _replicas(kubectl, ns) == 0, timeout=60, interval=0.3)
    assert broker.hlen("unacked") == 0 and broker.llen(queue) == 0
    assert len(_emails_only(_outbox(broker, outbox))) == 2, _outbox(broker, outbox)
