"""RQ workers in real pods on the real kubelet node (images/rq-worker: rq 3.0 and the
example app, examples/rq/welcome.py) against a real Redis.

A job enqueued in 10 s with no worker running wakes the pool so that a worker is
running when it is due, and runs once; long jobs drain through scale-in steps whose
grace period is shorter than a job, so a busy pod removed would cut its job off:
every email started is sent.
"""

from __future__ import annotations

import itertools
import time
from datetime import timedelta
from typing import Any

import pytest
import redis
import rq

from tests.e2e.brokers import RedisServer
from tests.e2e.support import Kubectl, RealNode, bgjob, eventually, on_real_node, secret

pytestmark = pytest.mark.real_node

JOB = "welcome.send_welcome_email"


def _replicas(kubectl: Kubectl, ns: str, name: str) -> int | None:
    deployment = kubectl.get("deployment", name, ns)
    return None if deployment is None else int(deployment["spec"]["replicas"])


def _outbox(broker: redis.Redis, key: str) -> list[tuple[str, str, str]]:
    """(pod, started|sent, user) in order."""
    entries = []
    for raw in broker.lrange(key, 0, -1):  # type: ignore[union-attr]
        _, pod, what, user = raw.decode().split(" ")
        entries.append((pod, what, user))
    return entries


def _pull_image(kubectl: Kubectl, ns: str, real_node: RealNode) -> None:
    """Run the worker image once, so the node has it: a cold pull (about 4 s for the
    Python layers) is a first-time cost that scheduleLeadSeconds would have to cover."""
    kubectl.apply(
        bgjob(
            "pull",
            {
                "image": real_node.image("rq-worker:1"),
                "command": ["python3", "-c", "import rq, welcome"],
                "trigger": {"once": {}},
                "template": {"spec": on_real_node()},
            },
        ),
        ns,
    )
    kubectl.wait("bgj/pull", "condition=Complete", ns, timeout=120)


def _emails(
    kubectl: Kubectl, ns: str, real_node: RealNode, url: str, queue: str, **queue_spec: Any
) -> dict[str, Any]:
    kubectl.apply(secret("emails-redis", url=url), ns)
    url_from = {"secretKeyRef": {"name": "emails-redis", "key": "url"}}
    return bgjob(
        "emails",
        {
            "image": real_node.image("rq-worker:1"),
            "command": ["python3", "-m", "rq.cli", "worker", "--with-scheduler", queue],
            "env": [
                {"name": "RQ_REDIS_URL", "valueFrom": url_from},
                {"name": "WELCOME_OUTBOX", "value": f"{ns}-outbox"},
            ],
            "trigger": {"queue": {"rq": {"urlFrom": url_from, "queues": [queue]}, **queue_spec}},
            "concurrency": 3,
            "shutdown": {"gracePeriodSeconds": 2},
            "template": {"spec": on_real_node()},
        },
    )


def test_a_job_enqueued_in_10_s_finds_a_real_worker_running_when_due_and_runs_once(
    kubectl: Kubectl, ns: str, real_node: RealNode, bridge_redis_server: RedisServer
) -> None:
    broker = redis.Redis.from_url(bridge_redis_server.url, socket_timeout=5)
    queue_name = f"{ns}-emails"
    url = bridge_redis_server.url_at(real_node.bridge_address)
    kubectl.apply(_emails(kubectl, ns, real_node, url, queue_name, cooldownSeconds=3), ns)
    kubectl.wait("bgj/emails", "condition=Ready", ns)
    assert _replicas(kubectl, ns, "emails") == 0

    job = rq.Queue(queue_name, connection=broker).enqueue_in(
        timedelta(seconds=10), JOB, "user-4712", 1.0
    )
    due = float(broker.zscore(f"rq:scheduled:{queue_name}", job.id))  # type: ignore[arg-type]
    while time.time() < due - 7:
        assert _replicas(kubectl, ns, "emails") == 0, "woke long before the job was due"
        time.sleep(0.3)

    def registered() -> float | None:
        return time.time() if broker.scard(f"rq:workers:{queue_name}") else None

    running_at = eventually(registered, timeout=40, interval=0.1)
    late = running_at - due
    print(f"due -> real RQ worker running: {late:+.2f} s")
    assert late <= 2.0, f"the first worker ran {late:.2f} s after the job was due"

    eventually(lambda: len(_outbox(broker, f"{ns}-outbox")) == 2, timeout=40)
    eventually(lambda: _replicas(kubectl, ns, "emails") == 0, timeout=40, interval=0.3)
    (started, sent) = _outbox(broker, f"{ns}-outbox")
    assert started[1:] == ("started", "user-4712") and sent[1:] == ("sent", "user-4712")
    assert started[0].startswith("emails-"), "the job ran in a pod of the pool"


def test_scale_in_on_real_pods_removes_idle_workers_and_every_email_started_is_sent(
    kubectl: Kubectl, ns: str, real_node: RealNode, bridge_redis_server: RedisServer
) -> None:
    broker = redis.Redis.from_url(bridge_redis_server.url, socket_timeout=5)
    queue_name = f"{ns}-emails"
    url = bridge_redis_server.url_at(real_node.bridge_address)
    kubectl.apply(
        _emails(kubectl, ns, real_node, url, queue_name, targetPerReplica=3, cooldownSeconds=1),
        ns,
    )
    kubectl.wait("bgj/emails", "condition=Ready", ns)
    queue = rq.Queue(queue_name, connection=broker)
    users = [f"user-{i:02d}" for i in range(9)]
    # Unequal lengths, each well over the 2 s grace period: workers fall idle one by one
    # while others still hold a job.
    for i, user in enumerate(users):
        queue.enqueue(JOB, user, 4.0 + (i % 3) * 3.0, job_timeout=120)
    samples: list[int] = []

    def all_sent() -> bool:
        samples.append(_replicas(kubectl, ns, "emails") or 0)
        return sum(e[1] == "sent" for e in _outbox(broker, f"{ns}-outbox")) == len(users)

    eventually(all_sent, timeout=150, interval=0.5)
    eventually(lambda: _replicas(kubectl, ns, "emails") == 0, timeout=40, interval=0.3)
    outbox = _outbox(broker, f"{ns}-outbox")
    started = sorted(user for _, what, user in outbox if what == "started")
    sent = sorted(user for _, what, user in outbox if what == "sent")
    assert started == sent == users, outbox
    downs = sum(1 for a, b in itertools.pairwise(samples) if b < a)
    print(f"replicas sampled: {samples}")
    assert downs >= 2, f"fewer than two scale-in steps: {samples}"
