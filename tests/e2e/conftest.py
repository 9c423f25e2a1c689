"""End-to-end fixtures: a real API server, the operator as a separate process.

The cluster is whatever KUBECONFIG names (hack/test.sh points it at the local
control plane). The operator runs with the ServiceAccount, ClusterRole and
binding rendered from the Helm chart, authenticated by that ServiceAccount's
token, so RBAC is tested for real. Each test gets its own namespace that
enforces Pod Security "restricted".
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.brokers import RabbitMQServer, RedisServer
from tests.e2e.support import (
    RELEASE,
    REPO,
    SYSTEM_NAMESPACE,
    Kubectl,
    Operator,
    RealNode,
    bin_dir,
    chart_rbac,
    eventually,
    restricted_namespace,
    serviceaccount_kubeconfig,
    wait_established,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_node: runs real containers on the local cluster's kubelet node"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def kubectl() -> Kubectl:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig or not Path(kubeconfig).exists():
        pytest.fail("no cluster: set KUBECONFIG or run through `make test` / hack/test.sh")
    k = Kubectl(kubeconfig, bin_dir())
    k.run("apply", "--server-side", "-f", str(REPO / "crds" / "bgjob.dev_backgroundjobs.yaml"))
    wait_established(k, "backgroundjobs.bgjob.dev")
    return k


def _active_namespace(k: Kubectl, name: str) -> bool:
    """Create the namespace; a previous session's may still be terminating."""
    found = k.get("namespace", name, "default")
    if found is None:
        k.run("create", "namespace", name, check=False)
        return False
    return bool(found["status"]["phase"] == "Active")


@pytest.fixture(scope="session")
def operator(kubectl: Kubectl) -> Iterator[Operator]:
    k = kubectl
    eventually(lambda: _active_namespace(k, SYSTEM_NAMESPACE), timeout=90)
    rbac = chart_rbac(k)
    k.run("apply", "-f", "-", stdin=rbac)
    token = k.run(
        "create", "token", RELEASE, "-n", SYSTEM_NAMESPACE, "--duration=4h"
    ).stdout.strip()
    workdir = Path(tempfile.mkdtemp(prefix="bgjob-e2e-"))
    kubeconfig = workdir / "operator.kubeconfig"
    serviceaccount_kubeconfig(k, token, kubeconfig)
    log_dir = Path(os.environ.get("BGJOB_E2E_LOGS", REPO / ".cluster" / "logs"))
    log_dir.mkdir(parents=True, exist_ok=True)
    op = Operator(kubeconfig, log_dir / "operator-e2e.log")
    op.start()
    yield op
    op.stop()
    k.run("delete", "-f", "-", "--ignore-not-found", stdin=rbac, check=False)
    k.run("delete", "namespace", SYSTEM_NAMESPACE, "--ignore-not-found", check=False)


@pytest.fixture
def ns(kubectl: Kubectl, operator: Operator, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace that enforces Pod Security "restricted"."""
    name = f"e2e-{secrets.token_hex(3)}"
    kubectl.apply(restricted_namespace(name), "default")
    eventually(lambda: kubectl.get("serviceaccount", "default", name), timeout=30)
    yield name
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(f"--- operator log (last lines) ---\n{operator.log_tail()}")
        print(kubectl.run("get", "events", "-n", name, check=False).stdout)
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on loopback for the whole session."""
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def rabbitmq_server() -> Iterator[RabbitMQServer]:
    """A real rabbitmq-server on loopback for the whole session."""
    server = RabbitMQServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def real_node(kubectl: Kubectl) -> RealNode:
    """The real kubelet node of the local cluster (node `localhost`), Ready."""
    node = RealNode(kubectl.kubeconfig)
    kubectl.wait("node/localhost", "condition=Ready", "default", timeout=60)
    return node


@pytest.fixture(scope="session")
def bridge_redis_server(real_node: RealNode) -> Iterator[RedisServer]:
    """A real redis-server, with a password, that pods on the real node reach:
    on 127.0.0.1 and the node's bridge address only."""
    server = RedisServer(password=secrets.token_hex(12), also_on=[real_node.bridge_address])
    server.start()
    yield server
    server.cleanup()
