"""Suspending a queue worker: no stale backlog in status or on /metrics."""

from __future__ import annotations

import json

import redis

from tests.e2e.brokers import RedisServer
from tests.e2e.support import Kubectl, Operator, bgjob, eventually, metric


def test_a_suspended_queue_worker_shows_no_stale_backlog(
    kubectl: Kubectl, ns: str, operator: Operator, redis_server: RedisServer
) -> None:
    queue = f"{ns}-mails"
    redis.Redis.from_url(redis_server.url).rpush(queue, *[f"mail-{i}" for i in range(7)])
    spec = {"trigger": {"queue": {"redis": {"url": redis_server.url, "list": queue}}}}
    kubectl.apply(bgjob("mailer", spec), ns)

    def backlog() -> float | None:
        return metric(operator.metrics(), "bgjob_queue_backlog", namespace=ns, name="mailer")

    eventually(lambda: kubectl.get("bgj", "mailer", ns)["status"].get("queueLength") == 7)  # type: ignore[index]
    eventually(lambda: backlog() == 7)

    patch = json.dumps({"spec": {"suspend": True}})
    kubectl.run("patch", "bgj", "mailer", "-n", ns, "--type=merge", "-p", patch)
    status = eventually(
        lambda: (s := kubectl.get("bgj", "mailer", ns)["status"])["state"] == "Suspended" and s  # type: ignore[index]
    )
    # Nobody reads the queue while suspended: the last number would be a stale one.
    assert "queueLength" not in status
    eventually(lambda: backlog() is None)
