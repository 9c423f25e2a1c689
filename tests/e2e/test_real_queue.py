"""Real queue workers on the real kubelet node against a real Redis.

The worker is images/queue-worker (hack/images.sh builds it): it takes one
message at a time off a Redis list, logs `start` and `finish` for each and, on
SIGTERM, finishes the message in hand before it exits 0. Besides its log, it
journals every event to a Redis list, so what happened is still readable after
the scaler has removed its pod. Redis listens on 127.0.0.1 and the node's
bridge address; the operator probes the same URL the pods use (one Secret).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from tests.e2e.brokers import RedisServer
from tests.e2e.support import (
    REAL_NODE,
    Kubectl,
    RealNode,
    bgjob,
    eventually,
    on_real_node,
    secret,
)

pytestmark = pytest.mark.real_node

MESSAGES = [f"message-{i:02d}" for i in range(12)]
# Longer than the cooldown plus a polling interval and a reconcile, so the
# scale-down after the last message is taken arrives while it is in hand.
WORK_SECONDS = 8
COOLDOWN_SECONDS = 2
GRACE_SECONDS = 30


@dataclass(frozen=True)
class Event:
    at: float
    pod: str
    what: str
    arg: str


def _journal(broker: redis.Redis, key: str) -> list[Event]:
    events = []
    for raw in broker.lrange(key, 0, -1):
        at, pod, what, *rest = raw.decode().split(" ", 3)
        events.append(Event(float(at), pod, what, rest[0] if rest else ""))
    return events


def _pods(kubectl: Kubectl, ns: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(
        "get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}"
    )["items"]
    return items


def _replicas(kubectl: Kubectl, ns: str, name: str) -> int | None:
    deployment = kubectl.get("deployment", name, ns)
    return None if deployment is None else int(deployment["spec"]["replicas"])


def test_workers_drain_the_queue_and_scale_to_zero_finishing_every_message(
    kubectl: Kubectl, ns: str, real_node: RealNode, bridge_redis_server: RedisServer
) -> None:
    broker = redis.Redis.from_url(bridge_redis_server.url, socket_timeout=5)
    queue, journal = f"{ns}-work", f"{ns}-journal"
    # The pods' URL, and the operator's: the bridge address is the host's own.
    url = bridge_redis_server.url_at(real_node.bridge_address)
    kubectl.apply(secret("broker", url=url), ns)
    url_from = {"secretKeyRef": {"name": "broker", "key": "url"}}
    broker.rpush(queue, *MESSAGES)
    applied = time.time()
    kubectl.apply(
        bgjob(
            "drain",
            {
                "image": real_node.image("queue-worker:1"),
                "env": [
                    {"name": "REDIS_URL", "valueFrom": url_from},
                    {"name": "QUEUE", "value": queue},
                    {"name": "JOURNAL", "value": journal},
                    {"name": "WORK_SECONDS", "value": str(WORK_SECONDS)},
                ],
                "trigger": {
                    "queue": {
                        "redis": {"urlFrom": url_from, "list": queue},
                        "targetPerReplica": 3,
                        "cooldownSeconds": COOLDOWN_SECONDS,
                        "pollingIntervalSeconds": 1,
                    }
                },
                "concurrency": 4,
                "shutdown": {"gracePeriodSeconds": GRACE_SECONDS},
                "template": {"spec": on_real_node()},
            },
        ),
        ns,
    )

    # Scaled up for the backlog, the workers running on the real node.
    eventually(lambda: (_replicas(kubectl, ns, "drain") or 0) >= 3, timeout=30, interval=0.2)
    seen_pods: set[str] = set()
    restarts: dict[str, int] = {}

    def look() -> None:
        for pod in _pods(kubectl, ns, "drain"):
            assert pod["spec"].get("nodeName") in (None, REAL_NODE)
            name = pod["metadata"]["name"]
            seen_pods.add(name)
            for cs in pod["status"].get("containerStatuses") or []:
                restarts[name] = max(restarts.get(name, 0), cs.get("restartCount", 0))

    def some_started() -> bool:
        look()
        return any(e.what == "start" for e in _journal(broker, journal))

    eventually(some_started, timeout=120, interval=0.5)

    def drained() -> bool:
        look()
        finished = [e for e in _journal(broker, journal) if e.what == "finish"]
        return broker.llen(queue) == 0 and len(finished) == len(MESSAGES)

    try:
        eventually(drained, timeout=len(MESSAGES) * WORK_SECONDS + 60, interval=0.5)
        # Back to zero after the cooldown: the Deployment at 0 and every pod gone.
        eventually(
            lambda: _replicas(kubectl, ns, "drain") == 0 and not _pods(kubectl, ns, "drain"),
            timeout=GRACE_SECONDS + 60,
            interval=0.5,
        )
    except AssertionError as e:
        pods = kubectl.run("get", "pods", "-n", ns, "-o", "wide", check=False).stdout
        lines = "\n".join(f"{x.at:.3f} {x.pod} {x.what} {x.arg}" for x in _journal(broker, journal))
        raise AssertionError(f"{e}\nbacklog {broker.llen(queue)}\n{pods}\njournal:\n{lines}") from e
    at_zero = time.time()
    state = kubectl.get("bgj", "drain", ns)["status"]["state"]  # type: ignore[index]
    assert state == "Idle"

    events = _journal(broker, journal)
    started = [e for e in events if e.what == "start"]
    finished = [e for e in events if e.what == "finish"]
    # Every message taken exactly once, and every one taken was finished by
    # the worker that took it, after it took it.
    assert sorted(e.arg for e in started) == MESSAGES
    assert sorted(e.arg for e in finished) == MESSAGES
    for s in started:
        done = [f for f in finished if f.arg == s.arg]
        assert len(done) == 1 and done[0].pod == s.pod and done[0].at >= s.at, (s, done)
    assert broker.llen(queue) == 0

    # No worker was killed: every one that started also logged its exit 0,
    # after SIGTERM (the scale-down), not on its own.
    ready = {e.pod for e in events if e.what == "ready"}
    exited = {e.pod for e in events if e.what == "exit"}
    terminated = {e.pod for e in events if e.what == "sigterm"}
    assert ready and ready == exited == terminated, (ready, exited, terminated)
    assert ready <= seen_pods, "workers the API server never listed on the real node"
    # None crashed (e.g. lost its connection to Redis) and was restarted.
    assert not any(restarts.values()), restarts
    assert len(ready) >= 3

    # The scale-downs came while workers held a message (what this test is
    # about), and each of those messages was finished after the SIGTERM,
    # within the grace period.
    held = []
    for e in events:
        if e.what != "sigterm":
            continue
        fields = dict(kv.split("=", 1) for kv in e.arg.split())
        if fields["holding"] != "-":
            held.append((e.pod, float(fields["at"]), fields["holding"]))
    assert held, "no scale-down caught a worker with a message in hand"
    for pod, at, message in held:
        (done,) = [f for f in finished if f.arg == message]
        assert done.pod == pod
        assert at < done.at < at + GRACE_SECONDS
    print(
        f"{len(ready)} workers on {REAL_NODE}; first message started "
        f"{min(e.at for e in started) - applied:.1f}s after the apply; "
        f"{len(held)} got SIGTERM holding a message ({', '.join(m for _, _, m in held)}) "
        f"and finished it; all pods gone {at_zero - max(e.at for e in finished):.1f}s "
        "after the last message was done"
    )
