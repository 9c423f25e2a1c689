"""The Helm chart installed for real: helm install, the operator it describes, upgrade, uninstall.

No container runs on kwok's nodes, so the Deployment's pod is a stand-in; the
operator runs as a process with exactly what the pod would have: the args the
chart rendered into the live Deployment, POD_NAMESPACE, and the release's
ServiceAccount token (so the chart's Roles are what authorize it). The release
watches only its own namespace; the suite's cluster-wide operator may act on
the same BackgroundJob too, so what is asserted about this operator comes
from its own metrics, log and Lease.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.support import (
    REPO,
    Kubectl,
    Operator,
    condition,
    eventually,
    metric,
    restricted_namespace,
    serviceaccount_kubeconfig,
)

CHART = REPO / "charts" / "bgjob-operator"
RELEASE = "bgjob-helm-e2e"
FULLNAME = f"{RELEASE}-bgjob-operator"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
# What a release owns, by kind; none may outlive `helm uninstall`.
RELEASE_KINDS = (
    "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets"
)
CLUSTER_KINDS = "clusterroles,clusterrolebindings"


def helm(k: Kubectl, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["helm", *args], capture_output=True, text=True, env=k.env, timeout=120, check=False
    )
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
    return result


def notes_example(install_output: str) -> dict[str, Any]:
    """The BackgroundJob that NOTES.txt tells the user to apply."""
    notes = install_output.split("NOTES:", 1)[1]
    block = notes.split("<<'YAML'\n", 1)[1].split("\n  YAML\n", 1)[0]
    example: dict[str, Any] = yaml.safe_load(block)
    return example


def operator_like_the_pod(k: Kubectl, namespace: str, workdir: Path) -> Operator:
    """The operator process, configured as the chart's Deployment configures its pod."""
    deployment = k.json("get", "deployment", FULLNAME, "-n", namespace)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # Addresses are the process's own loopback ports; everything else is the chart's.
    args = [
        a
        for a in container["args"]
        if not a.startswith(("--health-address=", "--metrics-address="))
    ]
    env = {**os.environ}
    for var in container.get("env", []):
        field = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        assert field == "metadata.namespace", f"unexpected env in the chart: {var}"
        env[var["name"]] = namespace
    token = k.run(
        "create", "token", pod["serviceAccountName"], "-n", namespace, "--duration=1h"
    ).stdout.strip()
    kubeconfig = workdir / "helm-operator.kubeconfig"
    serviceaccount_kubeconfig(k, token, kubeconfig)
    return Operator(kubeconfig, workdir / "helm-operator.log", args=args, env=env)


def release_objects(k: Kubectl, *namespaces: str) -> list[str]:
    found = []
    for namespace in namespaces:
        listed = k.json("get", RELEASE_KINDS, "-n", namespace, "-l", INSTANCE)
        found += [f"{o['kind']}/{o['metadata']['name']}" for o in listed["items"]]
    listed = k.json("get", CLUSTER_KINDS, "-l", INSTANCE)
    found += [f"{o['kind']}/{o['metadata']['name']}" for o in listed["items"]]
    return sorted(found)


@pytest.fixture
def namespaces(kubectl: Kubectl) -> Iterator[tuple[str, str]]:
    """The release's namespace and the one it watches, both enforcing "restricted"."""
    suffix = secrets.token_hex(3)
    names = (f"{RELEASE}-{suffix}", f"{RELEASE}-work-{suffix}")
    for name in names:
        kubectl.apply(restricted_namespace(name), "default")
    yield names
    for name in names:
        kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def test_helm_install_upgrade_and_uninstall(kubectl: Kubectl, namespaces: tuple[str, str]) -> None:
    k = kubectl
    system, work = namespaces
    workdir = Path(tempfile.mkdtemp(prefix="bgjob-helm-e2e-"))
    installed = helm(
        k, "install", RELEASE, str(CHART), "--namespace", system,
        "--set", f"watchNamespaces={{{work}}}", "--set", "logLevel=debug",
    )  # fmt: skip
    operator: Operator | None = None
    try:
        # The release's objects: namespaced RBAC where it watches, a Lease Role at home,
        # and the ClusterRoles that aggregate BackgroundJobs into users' edit and view.
        owned = release_objects(k, system, work)
        assert [o for o in owned if not o.startswith(("ReplicaSet/", "Pod/"))] == sorted(
            [
                f"ClusterRole/{FULLNAME}-edit",
                f"ClusterRole/{FULLNAME}-view",
                f"Deployment/{FULLNAME}",
                f"Service/{FULLNAME}-metrics",
                f"ServiceAccount/{FULLNAME}",
                f"Role/{FULLNAME}",
                f"RoleBinding/{FULLNAME}",
                f"Role/{FULLNAME}-leader-election",
                f"RoleBinding/{FULLNAME}-leader-election",
            ]
        )
        # Its pod is admitted where Pod Security "restricted" is enforced.
        eventually(lambda: k.json("get", "pods", "-n", system, "-l", INSTANCE)["items"], timeout=30)

        operator = operator_like_the_pod(k, system, workdir)
        operator.start()
        lease = eventually(lambda: k.get("lease", FULLNAME, system), timeout=30)
        assert lease["spec"].get("holderIdentity")

        example = notes_example(installed.stdout)
        k.apply(example, work)
        name = example["metadata"]["name"]
        k.wait(f"bgj/{name}", "condition=Ready", work, timeout=60)
        assert k.get("deployment", name, work) is not None

        def seen_running() -> bool:
            page = operator.metrics()
            return (metric(page, "bgjob_backgroundjobs", state="Running") or 0) >= 1 and (
                metric(page, "bgjob_reconcile_total", result="success") or 0
            ) >= 1

        eventually(seen_running, timeout=30)
        bgj = k.get("bgj", name, work)
        assert (condition(bgj, "Degraded") or {}).get("status") != "True", bgj
        log = operator.log_path.read_text()
        assert "Forbidden" not in log and " 403" not in log, operator.log_tail()

        # helm upgrade with changed values reaches the Deployment's arguments.
        helm(
            k, "upgrade", RELEASE, str(CHART), "--namespace", system, "--reuse-values",
            "--set", "workers=7", "--set", "logLevel=info",
        )  # fmt: skip
        args = k.json("get", "deployment", FULLNAME, "-n", system)["spec"]["template"]["spec"][
            "containers"
        ][0]["args"]
        assert "--workers=7" in args and "--log-level=info" in args
        assert f"--namespace={work}" in args
        status = yaml.safe_load(helm(k, "status", RELEASE, "-n", system, "-o", "yaml").stdout)
        assert status["version"] == 2 and status["info"]["status"] == "deployed"
    finally:
        if operator is not None:
            operator.stop()

    helm(k, "uninstall", RELEASE, "--namespace", system, "--wait", "--timeout=60s")
    eventually(lambda: release_objects(k, system, work) == [], timeout=60)
    # Helm keeps what is in crds/: the BackgroundJobs survive the operator.
    assert k.run("get", "crd", "backgroundjobs.bgjob.dev", check=False).returncode == 0
