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


def test_two_celery_queues_on_one_database_count_only_their_own_tasks_in_hand(
    kubectl: Kubectl, ns: str, redis_server: RedisServer, tmp_path: Path, monkeypatch: Any
) -> None:
    """kombu keeps one ``unacked`` hash per database: the tasks in hand of one queue
    must not hold up the pool of another queue of the same app."""
    # The database of the test above (the app's producer keeps its first connection);
    # two queues of one app on it.
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    from tests.e2e.celery_app import app, slow

    app.conf.broker_url = url
    broker = redis.Redis.from_url(url)
    busy_queue, quiet_queue, journal = f"{ns}-reports", f"{ns}-emails", f"{ns}-journal"

    def pool(queue: str) -> dict[str, Any]:
        return {
            "trigger": {
                "queue": {
                    "celery": {"url": url, "queue": queue},
                    "targetPerReplica": 1,
                    "cooldownSeconds": 2,
                }
            },
            "concurrency": 3,
        }

    kubectl.apply(bgjob("reports", pool(busy_queue)), ns)
    kubectl.apply(bgjob("emails", pool(quiet_queue)), ns)
    kubectl.wait("bgj/reports", "condition=Ready", ns)
    kubectl.wait("bgj/emails", "condition=Ready", ns)
    quiet: list[tuple[int, object]] = []
    with HostPool(
        kubectl,
        ns,
        "app.kubernetes.io/instance=reports",
        url,
        [busy_queue],
        log_dir=tmp_path,
        command=_celery_worker(url, busy_queue),
    ):
        for i in range(3):
            slow.apply_async((journal, f"report-{i}", 8.0), queue=busy_queue)

        def all_in_hand() -> bool:
            started = sum(e.startswith("started") for e in _journal(broker, journal))
            return started == 3 and broker.hlen("unacked") == 3

        eventually(all_in_hand, timeout=30, interval=0.2)
        deadline = time.time() + 5  # over two polls with three tasks in hand
        while time.time() < deadline:
            status = (kubectl.get("bgj", "emails", ns) or {}).get("status") or {}
            quiet.append((_replicas(kubectl, ns, "emails"), status.get("queueLength")))
            time.sleep(0.5)
        reports = (kubectl.get("bgj", "reports", ns) or {}).get("status") or {}
        assert _replicas(kubectl, ns, "reports") == 3
        assert reports.get("queueLength") == 3, reports
        eventually(
            lambda: sum(e.startswith("finished") for e in _journal(broker, journal)) == 3,
            timeout=30,
        )
    print(f"emails (replicas, queueLength) while reports held 3 tasks: {quiet}")
    assert all(sample == (0, 0) for sample in quiet), quiet
    conditions = (kubectl.get("bgj", "emails", ns) or {})["status"]["conditions"]
    assert not [c for c in conditions if c["type"] == "ScalingLimited"], conditions
