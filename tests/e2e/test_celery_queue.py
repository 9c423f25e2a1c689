"""A Celery queue on a real redis-server with real Celery workers (on the host, one per
pod they stand for): tasks in hand keep replicas up through the cooldown, and a
countdown task wakes the pool from zero and keeps a worker until it has run."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import redis

from tests.e2e.brokers import RedisServer
from tests.e2e.rq_pool import HostPool
from tests.e2e.support import Kubectl, bgjob, eventually


def _replicas(k: Kubectl, ns: str, name: str) -> int:
    deployment = k.get("deployment", name, ns)
    return int(deployment["spec"]["replicas"]) if deployment else -1


def _journal(broker: redis.Redis, key: str) -> list[str]:
    return [e.decode() for e in broker.lrange(key, 0, -1)]  # type: ignore[union-attr]


def _celery_worker(url: str, queue: str) -> Any:
    def argv(pod: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "--app",
            "tests.e2e.celery_app",
            "worker",
            "--queues",
            queue,
            "--concurrency",
            "1",
            "--pool",
            "solo",
            "--hostname",
            f"{pod}@e2e",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ]

    return argv


def test_celery_tasks_in_hand_keep_workers_and_a_countdown_task_wakes_the_pool(
    kubectl: Kubectl, ns: str, redis_server: RedisServer, tmp_path: Path, monkeypatch: Any
) -> None:
    # Its own database: kombu's unacked hash is shared by every queue of a database.
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    from tests.e2e.celery_app import app, slow

    app.conf.broker_url = url
    broker = redis.Redis.from_url(url)
    queue, journal = f"{ns}-tasks", f"{ns}-journal"
    spec = {
        "trigger": {
            "queue": {
                "celery": {"url": url, "queue": queue},
                "targetPerReplica": 1,
                "cooldownSeconds": 2,
            }
        },
        "concurrency": 3,
    }
    kubectl.apply(bgjob("tasks", spec), ns)
    kubectl.wait("bgj/tasks", "condition=Ready", ns)
    samples: list[tuple[int, int]] = []

    def in_hand() -> int:
        entries = _journal(broker, journal)
        return sum(e.startswith("started") for e in entries) - sum(
            e.startswith("finished") for e in entries
        )

    with HostPool(
        kubectl,
        ns,
        "app.kubernetes.io/instance=tasks",
        url,
        [queue],
        log_dir=tmp_path,
        command=_celery_worker(url, queue),
    ):
        for i in range(3):
            slow.apply_async((journal, f"task-{i}", 8.0), queue=queue)
        eventually(lambda: _replicas(kubectl, ns, "tasks") == 3, timeout=15, interval=0.2)

        def done(count: int) -> bool:
            samples.append((_replicas(kubectl, ns, "tasks"), in_hand()))
            return sum(e.startswith("finished") for e in _journal(broker, journal)) == count

        eventually(lambda: done(3), timeout=60, interval=0.3)
        # Every task ran 8 s, four cooldowns: the workers holding them were kept.
        assert all(replicas >= held for replicas, held in samples), samples
        eventually(lambda: _replicas(kubectl, ns, "tasks") == 0, timeout=30, interval=0.3)

        # A countdown task waits in the list: it wakes the pool, and the worker that
        # holds it (unacknowledged, in memory) stays until it has run.
        sent = time.time()
        slow.apply_async((journal, "later", 0.5), queue=queue, countdown=8)
        eventually(lambda: _replicas(kubectl, ns, "tasks") == 1, timeout=15, interval=0.2)
        while time.time() < sent + 7:
            assert _replicas(kubectl, ns, "tasks") >= 1, "the worker holding the task left"
            time.sleep(0.5)
        eventually(lambda: "finished later" in _journal(broker, journal), timeout=30)
        eventually(lambda: _replicas(kubectl, ns, "tasks") == 0, timeout=30, interval=0.3)
    entries = _journal(broker, journal)
    assert sorted(e for e in entries if e.startswith("finished")) == [
        "finished later",
        "finished task-0",
        "finished task-1",
        "finished task-2",
    ], entries
    assert entries.count("started later") == 1
