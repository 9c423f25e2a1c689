"""The Helm chart: what `helm template` renders, least-privilege RBAC, the values schema.

Golden files in tests/unit/golden/ hold the full rendering of the main value
combinations; after an intended change to the chart, regenerate them with

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_chart.py

and review the diff. These tests need the real `helm` (hack/bins.sh builds it
once into the cache); a missing helm is a failure, never a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgjob.api.models import parse
from bgjob.cli import render

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "bgjob-operator"
GOLDEN = Path(__file__).resolve().parent / "golden"
RELEASE = "bgjob-operator"
NAMESPACE = "bgjob-system"

CASES: dict[str, list[str]] = {
    "default": [],
    "watch-namespaces": ["--set", "watchNamespaces={team-a,team-b}"],
    "replicas-2": ["--set", "replicaCount=2"],
    "service-monitor": [
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "serviceMonitor.labels.release=prometheus",
    ],
    # The alternative to the ServiceMonitor, with the alerts and the dashboard.
    "monitoring": [
        "--set", "podMonitor.enabled=true",
        "--set", "prometheusRule.enabled=true",
        "--set", "grafanaDashboard.enabled=true",
    ],
    # OpenShift's restricted-v2 assigns the UID; the CRD is managed by hand.
    "openshift": [
        "--set", "podSecurityContext.runAsUser=null",
        "--set", "podSecurityContext.runAsGroup=null",
        "--set", "crds.install=false",
    ],
    "escape-hatches": [
        "--set", "logFormat=json",
        "--set", "image.digest=sha256:" + "0123456789abcdef" * 4,
        "--set", "extraArgs={--log-level=debug}",
        "--set", "extraEnv[0].name=HTTPS_PROXY",
        "--set", "extraEnv[0].value=http://proxy.example:3128",
        "--set", "extraVolumes[0].name=ca",
        "--set", "extraVolumes[0].configMap.name=corporate-ca",
        "--set", "extraVolumeMounts[0].name=ca",
        "--set", "extraVolumeMounts[0].mountPath=/etc/ssl/corporate",
        "--set", "topologySpreadConstraints[0].maxSkew=1",
        "--set", "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
        "--set", "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
        "--set", "global.imageRegistry=registry.example",
    ],
}  # fmt: skip


@cache
def helm() -> str:
    out = subprocess.run(
        [str(ROOT / "hack" / "bins.sh")], check=True, capture_output=True, text=True
    )
    path = Path(out.stdout.strip()) / "helm"
    assert path.is_file(), f"hack/bins.sh did not provide helm at {path}"
    return str(path)


@cache
def kube_version() -> str:
    """The Kubernetes release of the local control plane (hack/versions.env)."""
    text = (ROOT / "hack" / "versions.env").read_text()
    found = re.search(r"^KUBE_VERSION=(v[0-9.]+)$", text, re.MULTILINE)
    assert found, "hack/versions.env has no KUBE_VERSION"
    return found.group(1)


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    # No cluster is needed or wanted: keep helm away from any KUBECONFIG. Without
    # a cluster helm assumes a Kubernetes version (v1.20 in a build without
    # release ldflags); the chart's kubeVersion needs the real one, so render
    # for the release the tests run against.
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    if args and args[0] in ("template", "lint"):
        args = (*args, "--kube-version", kube_version())
    return subprocess.run(
        [helm(), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def template(*values: str) -> str:
    result = run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values)
    assert result.returncode == 0, result.stderr
    return result.stdout


def objects(*values: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(template(*values)) if doc]


def only(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = only(docs, "Deployment")
    return found


# --- golden renderings ----------------------------------------------------------------


def without_crd(rendered: str) -> str:
    """The rendering minus the CRD, which is the repository's crds/ file checked
    on its own (test_the_templated_crd_is_the_repository_crd_kept_on_uninstall),
    so `make crd` does not rewrite every golden file."""
    source = "# Source: bgjob-operator/templates/crds.yaml"
    return "\n---\n".join(d for d in rendered.split("\n---\n") if source not in d)


@pytest.mark.parametrize("case", CASES)
def test_the_rendering_matches_the_golden_file(case: str) -> None:
    rendered = without_crd(template(*CASES[case]))
    golden = GOLDEN / f"{case}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered)
    assert golden.exists(), f"no golden file {golden}; run with UPDATE_GOLDEN=1"
    assert rendered == golden.read_text(), (
        f"helm template differs from {golden.relative_to(ROOT)}; if intended, "
        "regenerate with UPDATE_GOLDEN=1 and review the diff"
    )


@pytest.mark.parametrize("case", CASES)
def test_helm_lint_strict_is_clean(case: str) -> None:
    result = run_helm("lint", "--strict", str(CHART), *CASES[case])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


# --- least privilege ------------------------------------------------------------------


def assert_least_privilege(role: dict[str, Any]) -> None:
    name = f"{role['kind']}/{role['metadata']['name']}"
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, []), f"{name} has a wildcard in {field}: {rule}"
        if "secrets" in rule["resources"]:
            assert set(rule["verbs"]) == {"get"}, f"{name} may do more than get secrets: {rule}"


def operator_cluster_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operator's own ClusterRole (not the aggregated ones for users)."""
    return [r for r in only(docs, "ClusterRole") if r["metadata"]["name"] == RELEASE]


def test_the_cluster_role_has_no_wildcards_and_only_gets_secrets() -> None:
    docs = objects()
    (role,) = operator_cluster_roles(docs)
    assert_least_privilege(role)
    secrets = [rule for rule in role["rules"] if "secrets" in rule["resources"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    (binding,) = only(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
    ]


def test_the_least_privilege_check_catches_a_wildcard() -> None:
    with pytest.raises(AssertionError, match="wildcard"):
        assert_least_privilege(
            {
                "kind": "ClusterRole",
                "metadata": {"name": "x"},
                "rules": [{"apiGroups": ["apps"], "resources": ["*"], "verbs": ["get"]}],
            }
        )
    with pytest.raises(AssertionError, match="more than get secrets"):
        assert_least_privilege(
            {
                "kind": "ClusterRole",
                "metadata": {"name": "x"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}],
            }
        )


def verbs(role: dict[str, Any], group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in role["rules"]
        if group in rule["apiGroups"] and resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize(
    ("group", "resource", "expected"),
    [
        # The audit-log e2e test (tests/e2e/test_zz_least_privilege.py) proves these are used.
        ("bgjob.dev", "backgroundjobs", {"get", "list", "watch"}),  # get: the owner check
        ("bgjob.dev", "backgroundjobs/status", {"patch"}),
        ("", "events", {"create"}),
        # list: a failed run's pods, once, for its exit code; patch: the deletion cost
        # that makes an rq Deployment's scale-in remove idle workers first.
        ("", "pods", {"list", "patch"}),
        ("batch", "jobs", {"get", "list", "watch", "create", "delete"}),
        ("apps", "deployments", {"get", "list", "watch", "create", "patch", "delete"}),
    ],
)
def test_the_operator_is_granted_only_the_verbs_it_calls(
    group: str, resource: str, expected: set[str]
) -> None:
    (role,) = operator_cluster_roles(objects())
    assert verbs(role, group, resource) == expected


@pytest.mark.parametrize("case", CASES)
def test_backgroundjobs_aggregate_into_the_builtin_user_roles(case: str) -> None:
    docs = objects(*CASES[case])
    roles = {r["metadata"]["name"]: r for r in only(docs, "ClusterRole")}
    view, edit = roles[f"{RELEASE}-view"], roles[f"{RELEASE}-edit"]
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k for k, v in view["metadata"]["labels"].items() if v == "true"} >= {
        f"{aggregate}view",
        f"{aggregate}edit",
        f"{aggregate}admin",
    }
    edit_labels = {k for k, v in edit["metadata"]["labels"].items() if v == "true"}
    assert f"{aggregate}view" not in edit_labels
    assert edit_labels >= {f"{aggregate}edit", f"{aggregate}admin"}
    assert verbs(view, "bgjob.dev", "backgroundjobs") == {"get", "list", "watch"}
    assert verbs(edit, "bgjob.dev", "backgroundjobs") == {
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    }
    # Users never write the status: that is the operator's.
    assert verbs(edit, "bgjob.dev", "backgroundjobs/status") == set()


def test_aggregated_roles_can_be_turned_off() -> None:
    docs = objects("--set", "aggregateClusterRoles=false")
    assert [r["metadata"]["name"] for r in only(docs, "ClusterRole")] == [RELEASE]


def test_watch_namespaces_grant_roles_in_those_namespaces_only() -> None:
    docs = objects(*CASES["watch-namespaces"])
    assert operator_cluster_roles(docs) == [] and only(docs, "ClusterRoleBinding") == []
    operator_roles = [r for r in only(docs, "Role") if r["metadata"]["name"] == RELEASE]
    assert sorted(r["metadata"]["namespace"] for r in operator_roles) == ["team-a", "team-b"]
    for role in operator_roles:
        assert_least_privilege(role)
    bindings = [b for b in only(docs, "RoleBinding") if b["metadata"]["name"] == RELEASE]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    args = deployment(docs)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace=")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]


def test_the_lease_role_is_namespaced_and_limited_to_the_release_lease() -> None:
    docs = objects()
    (lease_role,) = [
        r for r in only(docs, "Role") if r["metadata"]["name"].endswith("-leader-election")
    ]
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert_least_privilege(lease_role)
    granted = {
        (verb, tuple(rule.get("resourceNames", ())))
        for rule in lease_role["rules"]
        for verb in rule["verbs"]
        if rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
    }
    assert granted == {("create", ()), ("get", (RELEASE,)), ("update", (RELEASE,))}
    args = deployment(docs)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect" in args
    assert f"--leader-election-namespace={NAMESPACE}" in args
    assert f"--leader-election-id={RELEASE}" in args


# --- the Deployment -------------------------------------------------------------------


def test_one_replica_recreates_and_has_no_disruption_budget() -> None:
    docs = objects()
    spec = deployment(docs)["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert only(docs, "PodDisruptionBudget") == []


def test_two_replicas_roll_and_get_a_disruption_budget() -> None:
    docs = objects(*CASES["replicas-2"])
    spec = deployment(docs)["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    (pdb,) = only(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_the_operator_pod_is_restricted_and_writes_only_to_tmp() -> None:
    pod = deployment(objects())["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp" and "emptyDir" in pod["volumes"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["memory"]


def test_values_reach_the_operator_arguments() -> None:
    docs = objects("--set", "workers=9", "--set", "logLevel=debug", "--set", "image.tag=1.2.3")
    (container,) = deployment(docs)["spec"]["template"]["spec"]["containers"]
    assert "--workers=9" in container["args"] and "--log-level=debug" in container["args"]
    assert container["image"] == "ghcr.io/bgjob-dev/bgjob-operator:1.2.3"


@pytest.mark.parametrize(
    ("values", "arg"),
    [([], "--resync-seconds=600"), (["--set", "resyncSeconds=60"], "--resync-seconds=60")],
)
def test_the_resync_period_reaches_the_operator(values: list[str], arg: str) -> None:
    (container,) = deployment(objects(*values))["spec"]["template"]["spec"]["containers"]
    assert arg in container["args"]


def test_the_service_monitor_scrapes_the_metrics_service() -> None:
    docs = objects(*CASES["service-monitor"])
    (monitor,) = only(docs, "ServiceMonitor")
    (service,) = only(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [
        p["name"] for p in service["spec"]["ports"]
    ]
    assert only(objects(), "ServiceMonitor") == []


def test_the_pod_monitor_scrapes_the_pods_metrics_port_keeping_their_labels() -> None:
    docs = objects(*CASES["monitoring"])
    (monitor,) = only(docs, "PodMonitor")
    pod = deployment(docs)["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (container,) = pod["spec"]["containers"]
    assert endpoint["port"] in [p["name"] for p in container["ports"]]
    # bgjob_* series carry the BackgroundJob's namespace, not the operator pod's.
    assert endpoint["honorLabels"] is True
    assert only(docs, "ServiceMonitor") == []
    (service_endpoint,) = only(objects(*CASES["service-monitor"]), "ServiceMonitor")[0]["spec"][
        "endpoints"
    ]
    assert service_endpoint["honorLabels"] is True


def test_a_service_monitor_and_a_pod_monitor_together_are_refused() -> None:
    result = run_helm(
        "template", RELEASE, str(CHART),
        "--set", "serviceMonitor.enabled=true", "--set", "podMonitor.enabled=true",
    )  # fmt: skip
    assert result.returncode != 0
    assert "enable one" in result.stderr


def test_the_escape_hatches_reach_the_pod() -> None:
    docs = objects(*CASES["escape-hatches"])
    pod = deployment(docs)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/bgjob-dev/bgjob-operator@sha256:" + "0123456789abcdef" * 4
    assert "--log-format=json" in container["args"]
    # After the chart's own arguments, so the operator's parser lets it win.
    assert container["args"][-1] == "--log-level=debug"
    assert {"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"} in container["env"]
    assert container["volumeMounts"][1:] == [{"name": "ca", "mountPath": "/etc/ssl/corporate"}]
    assert pod["volumes"][1:] == [{"name": "ca", "configMap": {"name": "corporate-ca"}}]
    assert pod["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
        }
    ]
    default = deployment(objects())["spec"]["template"]["spec"]["containers"][0]
    assert "--log-format=text" in default["args"]
    assert default["image"] == "ghcr.io/bgjob-dev/bgjob-operator:0.1.0"


def test_openshift_can_drop_the_fixed_uid_and_keep_the_rest_restricted() -> None:
    pod = deployment(objects(*CASES["openshift"]))["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False


# --- the CRD --------------------------------------------------------------------------


def crds(*values: str) -> list[dict[str, Any]]:
    return only(objects(*values), "CustomResourceDefinition")


def test_the_templated_crd_is_the_repository_crd_kept_on_uninstall() -> None:
    (rendered,) = crds()
    committed = yaml.safe_load((ROOT / "crds" / "bgjob.dev_backgroundjobs.yaml").read_text())
    annotations = rendered["metadata"].pop("annotations")
    assert annotations == {"helm.sh/resource-policy": "keep"}
    assert rendered == committed


def test_crds_keep_false_lets_uninstall_delete_it_and_install_false_leaves_it_out() -> None:
    (rendered,) = crds("--set", "crds.keep=false")
    assert "annotations" not in rendered["metadata"]
    assert crds("--set", "crds.install=false") == []


def test_the_chart_works_as_a_subchart_with_global_values() -> None:
    assert deployment(objects("--set", "global.imageRegistry=registry.example"))


def test_chart_metadata_for_artifact_hub() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] and chart["home"].startswith("https://")
    assert chart["sources"]
    annotations = chart["annotations"]
    (crd,) = yaml.safe_load(annotations["artifacthub.io/crds"])
    assert crd["name"] == "backgroundjobs.bgjob.dev"
    (example,) = yaml.safe_load(annotations["artifacthub.io/crdsExamples"])
    parse(example)  # a valid BackgroundJob
    (image,) = yaml.safe_load(annotations["artifacthub.io/images"])
    assert image["image"].endswith(":" + chart["appVersion"])


# --- the values schema ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "replicaCont=2"], "additional properties 'replicaCont' not allowed"),
        (["--set", "image.tagg=1.0"], "additional properties 'tagg' not allowed"),
        (["--set", "serviceMonitor.enable=true"], "additional properties 'enable' not allowed"),
        (["--set", "logLevel=verbose"], "/logLevel"),
        (["--set", "workers=0"], "/workers"),
        (["--set", "resyncSeconds=0"], "/resyncSeconds"),
        (["--set", "watchNamespaces=team-a"], "/watchNamespaces"),
        (["--set", "logFormat=xml"], "/logFormat"),
        (["--set", "image.digest=latest"], "/image/digest"),
        (["--set", "crds.instal=true"], "additional properties 'instal' not allowed"),
        (["--set", "prometheusRule.degradedFor=soon"], "/prometheusRule/degradedFor"),
        (["--set", "prometheusRule.reconcileErrorRatio=2"], "/prometheusRule/reconcileErrorRatio"),
    ],
)
def test_a_bad_value_fails_helm_template(values: list[str], message: str) -> None:
    result = run_helm("template", RELEASE, str(CHART), *values)
    assert result.returncode != 0, f"helm template accepted {values}"
    assert message in result.stderr, result.stderr


def test_every_value_in_values_yaml_is_documented() -> None:
    # Each key has a comment line right above it; the contents of `resources`
    # and the security contexts are plain Kubernetes and covered by its comment.
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    parent = ""
    for i, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        depth, key = len(match.group(1)) // 2, match.group(2)
        if depth == 0:
            parent = key
        elif parent in ("resources", "podSecurityContext", "securityContext"):
            continue
        if not lines[i - 1].lstrip().startswith("#"):
            undocumented.append(line.strip())
    assert undocumented == []


# --- NOTES.txt ------------------------------------------------------------------------


def notes(*values: str) -> str:
    """NOTES.txt as `helm install` prints it, without a cluster.

    `helm template` never renders NOTES.txt, and `helm install --dry-run` needs
    a cluster, so a copy of the chart renders it through `tpl` into a document.
    """
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "chart"
        shutil.copytree(CHART, chart)
        shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.src")
        (chart / "templates" / "zz-notes.yaml").write_text(
            'notes: {{ tpl (.Files.Get "notes.src") . | toJson }}\n'
        )
        result = run_helm(
            "template", RELEASE, str(chart), "--namespace", NAMESPACE,
            "--show-only", "templates/zz-notes.yaml", *values,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text: str = yaml.safe_load(result.stdout)["notes"]
    return text


def notes_example(text: str) -> dict[str, Any]:
    block = text.split("<<'YAML'\n", 1)[1].split("\n  YAML\n", 1)[0]
    example: dict[str, Any] = yaml.safe_load(block)
    return example


def test_the_notes_example_runs_as_non_root() -> None:
    example = notes_example(notes())
    parse(example)  # a valid BackgroundJob
    manifests = render([example])
    pods = [m["spec"]["template"]["spec"] for m in manifests if m["kind"] == "Deployment"]
    assert pods, manifests
    for pod in pods:
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True
        # busybox's own user is root: without a non-root UID the kubelet refuses it.
        assert context["runAsUser"] > 0


def test_the_notes_point_at_the_watched_namespace() -> None:
    text = notes(*CASES["watch-namespaces"])
    assert "watching: team-a, team-b." in text
    assert "kubectl -n team-a wait --for=condition=Ready bgj/hello" in text
