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

import json
import os
import secrets
import shutil
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
    bgjob,
    condition,
    eventually,
    metric,
    restricted_namespace,
    serviceaccount_kubeconfig,
    wait_established,
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
CRD = "backgroundjobs.bgjob.dev"
CRD_FILE = REPO / "crds" / "bgjob.dev_backgroundjobs.yaml"


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
def suite_crd(kubectl: Kubectl) -> Iterator[None]:
    """The chart takes the suite's CRD over (and may change it); put crds/ back after."""
    yield
    kubectl.run("replace", "-f", str(CRD_FILE))
    wait_established(kubectl, CRD)


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


def test_helm_install_upgrade_and_uninstall(
    kubectl: Kubectl, namespaces: tuple[str, str], suite_crd: None
) -> None:
    k = kubectl
    system, work = namespaces
    workdir = Path(tempfile.mkdtemp(prefix="bgjob-helm-e2e-"))
    # The suite applied the CRD with kubectl; the chart's templated CRD adopts
    # it, as for anyone who installed an earlier chart that kept it in crds/.
    installed = helm(
        k, "install", RELEASE, str(CHART), "--namespace", system, "--take-ownership",
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
    # crds.keep: the CRD, and so the BackgroundJobs, survive the operator.
    assert k.run("get", "crd", CRD, check=False).returncode == 0
    assert k.get("bgj", example["metadata"]["name"], work) is not None


def chart_with_a_new_crd_field(workdir: Path) -> Path:
    """The chart as its next release would be: the CRD has one more optional field."""
    chart = workdir / "bgjob-operator"
    shutil.copytree(CHART, chart)
    crd_file = chart / "files" / "crds" / CRD_FILE.name
    crd = yaml.safe_load(crd_file.read_text())
    (version,) = crd["spec"]["versions"]
    version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["e2eNote"] = {
        "type": "string",
        "description": "A field only the next chart release knows.",
    }
    crd_file.write_text(yaml.safe_dump(crd))
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"] = "0.1.1-e2e"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return chart


def test_helm_upgrade_carries_a_new_crd_field(
    kubectl: Kubectl, namespaces: tuple[str, str], suite_crd: None
) -> None:
    k = kubectl
    system, work = namespaces
    workdir = Path(tempfile.mkdtemp(prefix="bgjob-helm-crd-"))
    probe = bgjob("crd-probe", {"trigger": {"continuous": {}}, "e2eNote": "hello"})

    def server_dry_run() -> subprocess.CompletedProcess[str]:
        return k.run(
            "create", "--dry-run=server", "--validate=strict", "-n", work, "-o", "json", "-f", "-",
            stdin=json.dumps(probe), check=False,
        )  # fmt: skip

    helm(
        k, "install", RELEASE, str(CHART), "--namespace", system, "--take-ownership",
        "--set", f"watchNamespaces={{{work}}}", "--set", "replicaCount=0",
    )  # fmt: skip
    crd = k.json("get", "crd", CRD)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
    before = server_dry_run()
    assert before.returncode != 0 and 'unknown field "spec.e2eNote"' in before.stderr, before

    helm(k, "upgrade", RELEASE, str(chart_with_a_new_crd_field(workdir)), "-n", system,
         "--reuse-values")  # fmt: skip

    # The API server serves the new field: a strict server-side dry run keeps it,
    # and kubectl explain (with a fresh cache) describes it.
    def accepted() -> dict[str, Any] | None:
        result = server_dry_run()
        return json.loads(result.stdout) if result.returncode == 0 else None

    served = eventually(accepted, timeout=30)
    assert served["spec"]["e2eNote"] == "hello"

    def explain() -> str | None:
        cache = tempfile.mkdtemp(dir=workdir)  # no OpenAPI cached from before the upgrade
        result = k.run("explain", "backgroundjob.spec.e2eNote", "--cache-dir", cache, check=False)
        return result.stdout if result.returncode == 0 else None

    assert "A field only the next chart release knows." in eventually(explain, timeout=30)

    helm(k, "uninstall", RELEASE, "--namespace", system, "--wait", "--timeout=60s")
    # Kept on uninstall, with what the upgrade brought.
    assert accepted() is not None
