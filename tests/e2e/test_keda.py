"""KEDA mode against KEDA's real CRDs (pinned in hack/versions.env) on a real API server.

KEDA's controller does not run here (no container images run), so these tests prove
what the operator is responsible for: its ScaledObjects and TriggerAuthentications are
accepted by the API server under KEDA's own schemas, it leaves the replicas alone in
that mode, and switching engines leaves nothing stale behind.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pika
import pytest
import redis

from tests.e2e.brokers import RabbitMQServer, RedisServer
from tests.e2e.support import REPO, Kubectl, Operator, bgjob, condition, eventually, secret

KEDA_CRDS = ("scaledobjects.keda.sh", "triggerauthentications.keda.sh")
MANAGER = "bgjob-operator"


@pytest.fixture(scope="module")
def keda_crds(kubectl: Kubectl) -> Iterator[str]:
    """KEDA's CRDs at the pinned version, installed with server-side apply."""
    crds = subprocess.run(
        [str(REPO / "hack" / "keda-crds.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    kubectl.run("apply", "--server-side", "-f", crds)
    for crd in KEDA_CRDS:
        # `kubectl wait` fails outright on a CRD whose status is not written yet.
        eventually(
            lambda crd=crd: (
                (condition(kubectl.get("crd", crd, "default"), "Established") or {}).get("status")
                == "True"
            ),
            timeout=60,
        )
    yield crds
    kubectl.run("delete", "-f", crds, "--ignore-not-found", "--wait=false", check=False)


class Engines:
    """Switches the operator between engines by restarting it, as a user would."""

    def __init__(self, builtin: Operator) -> None:
        self.builtin_operator = builtin
        self.keda_operator = Operator(
            builtin.kubeconfig,
            builtin.log_path,
            args=("--log-level=debug", "--scaling-engine=keda"),
        )

    def keda(self) -> None:
        self.builtin_operator.stop()
        self.keda_operator.start()

    def builtin(self) -> None:
        self.keda_operator.stop()
        process = self.builtin_operator.process
        if process is None or process.poll() is not None:
            self.builtin_operator.start()


@pytest.fixture
def engines(operator: Operator, keda_crds: str) -> Iterator[Engines]:
    """The session's (builtin) operator, switchable to KEDA mode; builtin again after."""
    switch = Engines(operator)
    try:
        yield switch
    finally:
        switch.builtin()


@pytest.fixture
def keda_mode(engines: Engines) -> Operator:
    """The operator in KEDA mode for the whole test."""
    engines.keda()
    return engines.keda_operator


def _deployment(k: Kubectl, ns: str, name: str) -> dict[str, Any]:
    result = k.run("get", "deployment", name, "-n", ns, "-o", "json", "--show-managed-fields")
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def _owns_replicas(deployment: dict[str, Any], manager: str) -> bool:
    return any(
        entry["manager"] == manager
        and "f:replicas" in (entry.get("fieldsV1") or {}).get("f:spec", {})
        for entry in deployment["metadata"].get("managedFields") or []
    )


def _replicas(k: Kubectl, ns: str, name: str) -> int:
    return int(k.get("deployment", name, ns)["spec"]["replicas"])  # type: ignore[index]


def _queue_worker(name: str, backend: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return bgjob(name, {"trigger": {"queue": {**backend, **settings}}, "concurrency": 4})


def test_switching_engines_hands_the_replicas_to_keda_and_back_leaving_nothing_stale(
    kubectl: Kubectl,
    ns: str,
    engines: Engines,
    redis_server: RedisServer,
    rabbitmq_server: RabbitMQServer,
) -> None:
    k = kubectl
    queue = f"{ns}-thumbs"
    broker = redis.Redis.from_url(redis_server.url)

    # Builtin: the operator scales the worker itself.
    k.apply(
        _queue_worker(
            "thumbs",
            {"redis": {"url": redis_server.url, "list": queue}},
            targetPerReplica=5,
            activationThreshold=2,
            cooldownSeconds=30,
        ),
        ns,
    )
    broker.rpush(queue, *[f"image-{i}" for i in range(12)])
    eventually(lambda: _replicas(k, ns, "thumbs") == 3, timeout=15, interval=0.2)
    assert _owns_replicas(_deployment(k, ns, "thumbs"), MANAGER)

    # KEDA mode: a ScaledObject appears, and the replicas are handed over, not reset.
    engines.keda()
    thumbs = eventually(lambda: k.get("scaledobject", "thumbs", ns), timeout=30)
    assert thumbs["metadata"]["ownerReferences"][0]["name"] == "thumbs"
    assert thumbs["metadata"]["labels"]["app.kubernetes.io/managed-by"] == MANAGER
    host, port = redis_server.url.removeprefix("redis://").split("/")[0].split(":")
    spec = thumbs["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "thumbs",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 4)
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (1, 30)
    # KEDA's schema keeps the HPA behaviour: cooldownSeconds slows every step down.
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 30
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["address"] == f"{host}:{port}"
    assert trigger["metadata"]["listName"] == queue
    assert (trigger["metadata"]["listLength"], trigger["metadata"]["activationListLength"]) == (
        "5",
        "2",
    )
    assert k.get("triggerauthentication", "thumbs", ns) is None, "no credentials, no auth"
    deployment = eventually(
        lambda: (d := _deployment(k, ns, "thumbs")) and not _owns_replicas(d, MANAGER) and d,
        timeout=15,
    )
    assert deployment["spec"]["replicas"] == 3, "dropping our replicas must not reset them"
    status = eventually(
        lambda: (s := k.get("bgj", "thumbs", ns)["status"]) and "queueLength" not in s and s  # type: ignore[index]
    )
    assert status["desiredReplicas"] == 3

    # A backlog is KEDA's business now: we don't scale.
    broker.rpush(queue, *[f"image-{i}" for i in range(40)])
    time.sleep(4)  # four polling intervals
    assert _replicas(k, ns, "thumbs") == 3
    k.wait("bgj/thumbs", "condition=Ready", ns)

    # Credentials in a Secret reach KEDA through a TriggerAuthentication.
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_server.url))
    connection.channel().queue_declare(queue=f"{ns}-mail")
    connection.close()
    k.apply(secret("rabbit", url=rabbitmq_server.url), ns)
    k.apply(
        _queue_worker(
            "mailer",
            {
                "rabbitmq": {
                    "urlFrom": {"secretKeyRef": {"name": "rabbit", "key": "url"}},
                    "queue": f"{ns}-mail",
                }
            },
            targetPerReplica=10,
        ),
        ns,
    )
    mailer = eventually(lambda: k.get("scaledobject", "mailer", ns), timeout=30)
    (trigger,) = mailer["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == f"{ns}-mail"
    assert trigger["metadata"]["mode"] == "QueueLength" and trigger["metadata"]["value"] == "10"
    assert "host" not in trigger["metadata"], "the URL stays in the Secret"
    assert trigger["authenticationRef"] == {"kind": "TriggerAuthentication", "name": "mailer"}
    auth = k.get("triggerauthentication", "mailer", ns)
    assert auth is not None
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "host", "name": "rabbit", "key": "url"}
    ]
    k.wait("bgj/mailer", "condition=Ready", ns)
    new = _deployment(k, ns, "mailer")
    assert not _owns_replicas(new, MANAGER), new["metadata"]["managedFields"]
    assert "queueLength" not in k.get("bgj", "mailer", ns)["status"]  # type: ignore[index]

    # Back to builtin: the KEDA objects go, replicas follow the backlog again.
    engines.builtin()
    for kind, name in [
        ("scaledobject", "thumbs"),
        ("scaledobject", "mailer"),
        ("triggerauthentication", "mailer"),
    ]:
        eventually(lambda kind=kind, name=name: k.get(kind, name, ns) is None, timeout=30)
    eventually(lambda: _replicas(k, ns, "thumbs") == 4, timeout=15, interval=0.2)
    assert _owns_replicas(_deployment(k, ns, "thumbs"), MANAGER)
    eventually(lambda: k.get("bgj", "thumbs", ns)["status"].get("queueLength") == 52)  # type: ignore[index]
    k.wait("bgj/mailer", "condition=Ready", ns)
    broker.delete(queue)


def test_keda_mode_reports_a_redis_url_in_a_secret_as_unsupported(
    kubectl: Kubectl, ns: str, keda_mode: Operator
) -> None:
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "redis"},
            "stringData": {"url": "redis://:secret@127.0.0.1:6379/0"},
        },
        ns,
    )
    kubectl.apply(
        _queue_worker(
            "cached",
            {"redis": {"urlFrom": {"secretKeyRef": {"name": "redis", "key": "url"}}, "list": "x"}},
        ),
        ns,
    )
    kubectl.wait("bgj/cached", "condition=Degraded", ns, timeout=30)
    degraded = condition(kubectl.get("bgj", "cached", ns), "Degraded")
    assert degraded is not None and degraded["reason"] == "KEDAUnsupported"
    assert "spec.trigger.queue.redis.urlFrom" in degraded["message"]
    assert ":secret@" not in json.dumps(kubectl.get("bgj", "cached", ns))
    assert kubectl.get("scaledobject", "cached", ns) is None
    assert kubectl.get("deployment", "cached", ns) is None


def test_kedas_schemas_are_really_enforced(kubectl: Kubectl, ns: str, keda_crds: str) -> None:
    """The check above means something: KEDA's CRD rejects what its schema forbids."""
    result = kubectl.try_apply(
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "bad"},
            "spec": {
                "scaleTargetRef": {"name": "x"},
                "minReplicaCount": 5,
                "maxReplicaCount": 2,
                "triggers": [{"type": "redis", "metadata": {}}],
            },
        },
        ns,
    )
    assert result.returncode != 0
    assert "minReplicaCount must be less than or equal to maxReplicaCount" in result.stderr
