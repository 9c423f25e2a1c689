"""/metrics and /healthz of a running operator move as BackgroundJobs change."""

from __future__ import annotations

import json
import urllib.request

from tests.e2e.support import Kubectl, Operator, bgjob, eventually, metric


def test_metrics_follow_the_backgroundjobs(kubectl: Kubectl, ns: str, operator: Operator) -> None:
    def sample(metric_name: str, /, **labels: str) -> float:
        return metric(operator.metrics(), metric_name, **labels) or 0.0

    reconciles = sample("bgjob_reconcile_total", result="success")
    kubectl.apply(bgjob("counted", {"trigger": {"continuous": {}}, "concurrency": 3}), ns)
    kubectl.wait("bgj/counted", "condition=Ready", ns)

    eventually(lambda: sample("bgjob_ready_replicas", namespace=ns, name="counted") == 3)
    assert sample("bgjob_desired_replicas", namespace=ns, name="counted") == 3
    # Other tests' objects come and go, so the per-state count is only bounded here.
    assert sample("bgjob_backgroundjobs", state="Running") >= 1
    assert sample("bgjob_reconcile_total", result="success") > reconciles
    assert sample("bgjob_reconcile_duration_seconds_count") > 0
    assert sample("bgjob_leader") == 1

    kubectl.run("delete", "bgj", "counted", "-n", ns)
    eventually(
        lambda: (
            metric(operator.metrics(), "bgjob_desired_replicas", namespace=ns, name="counted")
            is None
        )
    )

    url = f"http://127.0.0.1:{operator.health_port}/healthz"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert "backgroundjobs" in json.loads(response.read())["cache"]
