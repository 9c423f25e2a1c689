"""The operator as users run it: its image, from its chart, in a pod on the real node.

The image is the project's Dockerfile built with buildah on the test bed's
Debian Python base (hack/operator-image.sh) and pushed to the node's registry.
The chart installs it with its ServiceAccount, a read-only root filesystem,
in a namespace that enforces Pod Security "restricted"; the pod reaches the
API server through the `kubernetes` Service address like in any cluster.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.e2e.support import (
    REAL_NODE,
    REAL_NODE_TAINT,
    REPO,
    Kubectl,
    RealNode,
    bgjob,
    eventually,
    restricted_namespace,
)
from tests.e2e.test_real_pods import _results

pytestmark = pytest.mark.real_node

CHART = REPO / "charts" / "bgjob-operator"
RELEASE = "bgjob-pod-e2e"
FULLNAME = f"{RELEASE}-bgjob-operator"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"


@pytest.fixture(scope="session")
def operator_image(real_node: RealNode) -> str:
    """The Dockerfile, built now (layers cached) and pushed to the node's registry."""
    started = time.monotonic()
    built = subprocess.run(
        [str(REPO / "hack" / "operator-image.sh"), real_node.registry, "e2e"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    _results(f"operator image: built and pushed in {time.monotonic() - started:.1f}s")
    return built.stdout.strip().splitlines()[-1]


@pytest.fixture
def namespaces(kubectl: Kubectl) -> Iterator[tuple[str, str]]:
    suffix = secrets.token_hex(3)
    names = (f"{RELEASE}-{suffix}", f"{RELEASE}-work-{suffix}")
    for name in names:
        kubectl.apply(restricted_namespace(name), "default")
    yield names
    for name in names:
        kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def helm(k: Kubectl, *args: str) -> None:
    result = subprocess.run(
        ["helm", *args], capture_output=True, text=True, env=k.env, timeout=180, check=False
    )
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"


def ready_pods(k: Kubectl, namespace: str) -> list[dict[str, object]]:
    pods = k.json("get", "pods", "-n", namespace, "-l", INSTANCE)["items"]
    return [
        p
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions") or []
        )
    ]


def lease_holder(k: Kubectl, namespace: str) -> str:
    lease = k.get("lease", FULLNAME, namespace)
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def test_the_chart_runs_the_image_on_the_real_node_and_fails_over(
    kubectl: Kubectl, namespaces: tuple[str, str], real_node: RealNode, operator_image: str
) -> None:
    k = kubectl
    system, work = namespaces
    repository, tag = operator_image.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag},
        "watchNamespaces": [work],
        "logLevel": "debug",
        "nodeSelector": {"kubernetes.io/hostname": REAL_NODE},
        "tolerations": [{"key": REAL_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
        # The suite installed the CRD; this release runs the operator only.
        "crds": {"install": False},
    }
    values_file = REPO / ".cluster" / f"{RELEASE}-values.json"
    values_file.write_text(json.dumps(values))
    started = time.monotonic()
    helm(k, "install", RELEASE, str(CHART), "-n", system, "-f", str(values_file))
    try:
        (pod,) = eventually(lambda: ready_pods(k, system), timeout=180, interval=0.5)
        _results(f"operator pod: helm install -> Ready {time.monotonic() - started:.1f}s")
        spec = pod["spec"]
        assert isinstance(spec, dict)
        assert spec["nodeName"] == REAL_NODE
        assert spec["serviceAccountName"] == FULLNAME
        (container,) = spec["containers"]
        assert container["image"] == operator_image
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        pod_name = pod["metadata"]["name"]  # type: ignore[index]
        # The real process in the real image: uid 65532, root filesystem read-only.
        uid = k.run("exec", pod_name, "-n", system, "--", "id", "-u")
        assert uid.stdout.strip() == "65532"
        touch = k.run(
            "exec", pod_name, "-n", system, "--",
            "python", "-c", "open('/opt/bgjob/x', 'w')",
            check=False,
        )  # fmt: skip
        assert "Read-only file system" in touch.stderr

        holder = eventually(lambda: lease_holder(k, system), timeout=60)
        assert holder.startswith(f"{pod_name}_")

        # It reconciles: a BackgroundJob in the watched namespace gets its Deployment,
        # and the pod's own log shows that it wrote it.
        k.apply(bgjob("in-cluster", {"trigger": {"continuous": {}}}), work)
        eventually(lambda: k.get("deployment", "in-cluster", work), timeout=60)
        path = f"/namespaces/{work}/deployments/in-cluster"
        eventually(
            lambda: path in k.run("logs", pod_name, "-n", system).stdout, timeout=30, interval=1
        )

        # Two replicas: delete the leader's pod, the other takes the Lease over.
        helm(k, "upgrade", RELEASE, str(CHART), "-n", system, "--reuse-values",
             "--set", "replicaCount=2")  # fmt: skip
        eventually(lambda: len(ready_pods(k, system)) == 2, timeout=180, interval=0.5)
        holder = lease_holder(k, system)
        leader = holder.split("_")[0]
        deleted = time.monotonic()
        k.run("delete", "pod", leader, "-n", system, "--wait=false")
        new_holder = eventually(
            lambda: (h := lease_holder(k, system)) and h != holder and h, timeout=120, interval=0.1
        )
        failover = time.monotonic() - deleted
        _results(f"operator failover in-cluster: leader pod deleted -> new holder {failover:.1f}s")
        assert not str(new_holder).startswith(f"{leader}_")
        # The Deployment's replacement pod comes up as the new standby. (Uninstalling
        # before it is up takes its RBAC away mid-start: kopf then retries its startup
        # in 60 s and ignores SIGTERM meanwhile, so the pod waits for SIGKILL.)
        eventually(lambda: len(ready_pods(k, system)) == 2, timeout=180, interval=0.5)
    finally:
        print(k.run("get", "pods,events", "-n", system, check=False).stdout)

    helm(k, "uninstall", RELEASE, "-n", system, "--wait", "--timeout=120s")
    # The operator pods stop on SIGTERM (released Lease, exit), long before their grace period.
    eventually(lambda: k.json("get", "pods", "-n", system)["items"] == [], timeout=30)
