"""RQ queues: real RQ workers (on the host, one per pod they stand for) against a real
redis-server. Delayed jobs wake a pool at zero on time; scale-in removes idle workers
only, so no started job is cut off; in-flight jobs keep replicas up through the cooldown."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
import rq

from tests.e2e.brokers import RedisServer
from tests.e2e.rq_pool import HostPool, slow
from tests.e2e.support import Kubectl, bgjob, events, eventually

SELECTOR = "app.kubernetes.io/instance={name}"


def _replicas(k: Kubectl, ns: str, name: str) -> int:
    deployment = k.get("deployment", name, ns)
    return int(deployment["spec"]["replicas"]) if deployment else -1


def _rq_worker(name: str, url: str, queues: list[str], **queue_spec: Any) -> dict[str, Any]:
    return bgjob(
        name,
        {
            "trigger": {"queue": {"rq": {"url": url, "queues": queues}, **queue_spec}},
            "concurrency": 4,
            "shutdown": {"gracePeriodSeconds": 1},
        },
    )


def _journal(broker: redis.Redis, key: str) -> list[str]:
    return [entry.decode() for entry in broker.lrange(key, 0, -1)]  # type: ignore[union-attr]


def test_a_job_enqueued_in_10_s_wakes_the_pool_from_zero_and_runs_once_on_time(
    kubectl: Kubectl, ns: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    broker = redis.Redis.from_url(redis_server.url)
    queue_name, journal = f"{ns}-mail", f"{ns}-journal"
    kubectl.apply(_rq_worker("mail", redis_server.url, [queue_name], cooldownSeconds=5), ns)
    kubectl.wait("bgj/mail", "condition=Ready", ns)
    assert _replicas(kubectl, ns, "mail") == 0

    queue = rq.Queue(queue_name, connection=broker)
    with HostPool(
        kubectl, ns, SELECTOR.format(name="mail"), redis_server.url, [queue_name], log_dir=tmp_path
    ) as pool:
        job = queue.enqueue_in(timedelta(seconds=10), slow, journal, "welcome", 0.5)
        due = float(broker.zscore(f"rq:scheduled:{queue_name}", job.id))  # type: ignore[arg-type]
        # Nobody is kept up for a job that is not due yet (lead: 5 s by default).
        while time.time() < due - 7:
            assert _replicas(kubectl, ns, "mail") == 0, "woke long before the job was due"
            time.sleep(0.3)

        def worker_running() -> float | None:
            if broker.scard(f"rq:workers:{queue_name}"):
                return time.time()
            return None

        running_at = eventually(worker_running, timeout=30, interval=0.1)
        late = running_at - due
        print(f"due -> worker running: {late:+.2f} s")
        assert late <= 2.0, f"the first worker ran {late:.2f} s after the job was due"
        assert late >= -8.0, f"the worker ran {-late:.2f} s before the job was due"

        eventually(lambda: "finished welcome" in _journal(broker, journal), timeout=30)
        # The pool goes back to zero after the cooldown, and the job ran exactly once.
        eventually(lambda: _replicas(kubectl, ns, "mail") == 0, timeout=30, interval=0.3)
        assert _journal(broker, journal) == ["started welcome", "finished welcome"]
        assert pool.started_at, "no worker was started"


def test_scale_in_never_interrupts_a_started_job_and_in_flight_jobs_keep_replicas(
    kubectl: Kubectl, ns: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    broker = redis.Redis.from_url(redis_server.url)
    queue_name, journal = f"{ns}-long", f"{ns}-journal"
    kubectl.apply(
        _rq_worker("long", redis_server.url, [queue_name], targetPerReplica=5, cooldownSeconds=2),
        ns,
    )
    kubectl.wait("bgj/long", "condition=Ready", ns)
    queue = rq.Queue(queue_name, connection=broker)
    samples: list[tuple[int, int]] = []  # (replicas, jobs started and not finished)
    shown: list[tuple[int | None, str | None]] = []  # status: busyWorkers, lastActivityTime
    with HostPool(
        kubectl, ns, SELECTOR.format(name="long"), redis_server.url, [queue_name], log_dir=tmp_path
    ):
        # 20 jobs of about 10 s: 16 of 8 s, then 4 that end 5 s apart, so the workers
        # fall idle one by one, each step longer than the cooldown, while others still
        # hold a job.
        lengths = [8.0] * 16 + [2.0, 7.0, 12.0, 17.0]
        for i, seconds in enumerate(lengths):
            queue.enqueue(slow, journal, f"job-{i:02d}", seconds, job_timeout=120)
        eventually(lambda: _replicas(kubectl, ns, "long") == 4, timeout=15, interval=0.2)

        def drained() -> bool:
            entries = _journal(broker, journal)
            started = sum(e.startswith("started") for e in entries)
            finished = sum(e.startswith("finished") for e in entries)
            samples.append((_replicas(kubectl, ns, "long"), started - finished))
            status = (kubectl.get("bgj", "long", ns) or {}).get("status") or {}
            shown.append((status.get("busyWorkers"), status.get("lastActivityTime")))
            return finished == 20

        eventually(drained, timeout=180, interval=0.5)
        eventually(lambda: _replicas(kubectl, ns, "long") == 0, timeout=30, interval=0.3)

    entries = _journal(broker, journal)
    started = sorted(e.split()[1] for e in entries if e.startswith("started"))
    finished = sorted(e.split()[1] for e in entries if e.startswith("finished"))
    assert started == finished == [f"job-{i:02d}" for i in range(20)], entries
    # Status showed the pool's busy workers (all 4 at first) and when a job last
    # started or finished, moving on as jobs did.
    busy_seen = [busy for busy, _ in shown if busy is not None]
    assert max(busy_seen) == 4 and min(busy_seen) < 4, shown
    assert len({at for _, at in shown if at is not None}) >= 3, shown
    # In-flight jobs kept workers up: never fewer replicas than jobs in hand.
    assert all(replicas >= in_flight for replicas, in_flight in samples), samples
    # Scale-in happened in several steps while jobs were still running.
    downs = [
        e["message"]
        for e in events(kubectl, ns, "long")
        if e["reason"] == "Scaled" and not e["message"].startswith("scaled long 0→")
    ]
    steps_with_work = [s for s in itertools.pairwise(samples) if s[1][0] < s[0][0] and s[1][1] > 0]
    print(f"scale-in events: {downs}")
    assert len(steps_with_work) >= 2, f"fewer than 2 scale-in cycles with jobs in hand: {samples}"


def test_busy_workers_of_a_pool_with_the_longest_name_are_its_own(
    kubectl: Kubectl, ns: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """A 52-character BackgroundJob (the longest allowed): its pods' names are cut by the
    API server, its workers' hostnames are those names, and they hold the pool up."""
    name = "welcome-emails-for-every-new-customer-of-the-shop-eu"
    assert len(name) == 52
    broker = redis.Redis.from_url(redis_server.url)
    queue_name, journal = f"{ns}-welcome", f"{ns}-journal"
    kubectl.apply(
        _rq_worker(name, redis_server.url, [queue_name], targetPerReplica=1, cooldownSeconds=1),
        ns,
    )
    kubectl.wait(f"bgj/{name}", "condition=Ready", ns)
    with HostPool(
        kubectl, ns, SELECTOR.format(name=name), redis_server.url, [queue_name], log_dir=tmp_path
    ):
        queue = rq.Queue(queue_name, connection=broker)
        for i in range(2):
            queue.enqueue(slow, journal, f"job-{i}", 12.0, job_timeout=120)

        def busy_shown() -> int | None:
            status = (kubectl.get("bgj", name, ns) or {}).get("status") or {}
            busy = status.get("busyWorkers")
            return busy if busy == 2 and status.get("queueLength") == 2 else None

        eventually(busy_shown, timeout=30, interval=0.3)
        pods = [
            p["metadata"]["name"]
            for p in kubectl.json("get", "pods", "-n", ns, "-l", SELECTOR.format(name=name))[
                "items"
            ]
        ]
        assert pods and all(len(p) <= 63 for p in pods), pods
        # Nothing waits, both jobs are in hand, the cooldown has passed: the busy
        # workers alone keep both replicas.
        time.sleep(4)
        assert _replicas(kubectl, ns, name) == 2
        eventually(
            lambda: sum(e.startswith("finished") for e in _journal(broker, journal)) == 2,
            timeout=30,
        )
    entries = _journal(broker, journal)
    assert sorted(e for e in entries if e.startswith("finished")) == [
        "finished job-0",
        "finished job-1",
    ], entries
