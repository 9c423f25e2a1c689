"""The chart's alerts and dashboard, through the tools that read them.

The PrometheusRule is rendered by `helm template`, checked by `promtool check
rules` and unit-tested by `promtool test rules` (tests/unit/promtool/);
hack/tools.sh builds promtool once into the cache, and a missing promtool is a
failure, never a skip. Every PromQL expression, in the rules and in the Grafana
dashboard, may name only metrics the operator exports (bgjob.metrics).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from test_chart import CHART, ROOT, objects, only

from bgjob import metrics
from bgjob.store import Store

PROMTOOL_TESTS = Path(__file__).resolve().parent / "promtool"
DASHBOARD = CHART / "files" / "dashboards" / "bgjob-operator.json"
RULES = ["--set", "prometheusRule.enabled=true"]


@cache
def promtool() -> str:
    out = subprocess.run(
        [str(ROOT / "hack" / "tools.sh")], check=True, capture_output=True, text=True, timeout=3600
    )
    path = Path(out.stdout.strip()) / "promtool"
    assert path.is_file(), f"hack/tools.sh did not provide promtool at {path}"
    return str(path)


def rule_groups(*values: str) -> dict[str, Any]:
    (rule,) = only(objects(*RULES, *values), "PrometheusRule")
    spec: dict[str, Any] = rule["spec"]
    return spec


def run_promtool(tmp_path: Path, *values: str) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` and then `promtool test rules` on the rendered rules."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups(*values)))
    shutil.copy(PROMTOOL_TESTS / "alerts_test.yaml", tmp_path)
    check = subprocess.run(
        [promtool(), "check", "rules", "rules.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if check.returncode != 0:
        return check
    return subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_alerts_pass_promtool_check_and_their_unit_tests(tmp_path: Path) -> None:
    result = run_promtool(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("value", "alert"),
    [
        # Degraded for 30 minutes before alerting: the 20-minute case no longer fires.
        ("prometheusRule.degradedFor=30m", "BackgroundJobDegraded"),
        # 20 % errors before alerting: the 10 % case no longer fires.
        ("prometheusRule.reconcileErrorRatio=0.2", "BgjobOperatorReconcileErrors"),
    ],
)
def test_the_alert_thresholds_come_from_the_values(tmp_path: Path, value: str, alert: str) -> None:
    result = run_promtool(tmp_path, "--set", value)
    assert result.returncode != 0
    assert f"alertname: {alert}, time: 20m" in result.stdout + result.stderr, result.stdout


def test_the_rule_is_optional_and_carries_its_labels() -> None:
    assert only(objects(), "PrometheusRule") == []
    (rule,) = only(
        objects(*RULES, "--set", "prometheusRule.labels.release=prometheus"), "PrometheusRule"
    )
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts == {
        "BackgroundJobDegraded",
        "BackgroundJobStalled",
        "BackgroundJobQueueBacklogGrowing",
        "BgjobOperatorNotLeading",
        "BgjobOperatorReconcileErrors",
    }


# --- metric names ---------------------------------------------------------------------

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created", ""),
    "info": ("_info",),
}


def exported() -> set[str]:
    """Every series name the operator's /metrics can hold, from bgjob.metrics' registry."""
    families = [*REGISTRY.collect(), *metrics.StoreCollector(Store()).describe()]
    return {f.name + suffix for f in families for suffix in SUFFIXES.get(f.type, ("",))}


# Words of PromQL that look like metric names; functions are followed by "(".
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (label names, strings, ranges left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)  # matchers, ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,[^)]*\)", r"\1", expr)
    names = re.findall(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)
    return {n for n in names if n.lower() not in KEYWORDS}


def dashboard_exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_exprs(item)


def test_the_name_check_sees_what_an_expression_selects() -> None:
    expr = (
        'sum by (namespace) (rate(bgjob_reconcile_total{result="error"}[5m])) / '
        "histogram_quantile(0.9, bgjob_reconcile_duration_seconds_bucket) and on (name) "
        "bgjob_nope + label_values(bgjob_desired_replicas, namespace)"
    )
    assert metric_names(expr) == {
        "bgjob_reconcile_total",
        "bgjob_reconcile_duration_seconds_bucket",
        "bgjob_nope",
        "bgjob_desired_replicas",
    }
    assert "bgjob_nope" not in exported()


def test_every_alert_names_only_exported_metrics() -> None:
    unknown = {
        (r["alert"], name)
        for g in rule_groups()["groups"]
        for r in g["rules"]
        for name in metric_names(r["expr"]) - exported()
    }
    assert unknown == set()


def test_the_dashboard_is_json_that_names_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(dashboard_exprs(dashboard))
    assert len(exprs) >= 10
    unknown = {(e, n) for e in exprs for n in metric_names(e) - exported()}
    assert unknown == set()
    # Each panel uses the data source chosen on the dashboard, and has a unique id.
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_the_dashboard_configmap_is_optional_and_labelled_for_the_sidecar() -> None:
    assert [c for c in only(objects(), "ConfigMap") if "dashboard" in c["metadata"]["name"]] == []
    (configmap,) = only(
        objects(
            "--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.namespace=grafana"
        ),
        "ConfigMap",
    )
    assert configmap["metadata"]["namespace"] == "grafana"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["bgjob-operator.json"]) == json.loads(DASHBOARD.read_text())


@pytest.mark.parametrize("expr", ["bgjob_ready_replicas", "bgjob_build_info", "bgjob_leader"])
def test_the_export_list_knows_the_operator_metrics(expr: str) -> None:
    assert expr in exported()
