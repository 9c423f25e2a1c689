"""The work queue's and the scaler's metrics on a running operator's /metrics."""

from __future__ import annotations

from tests.e2e.support import Kubectl, Operator, bgjob, condition, eventually, metric

QUEUE = {"name": "backgroundjob"}


def test_the_work_queue_and_probe_errors_move_and_the_series_leaves_with_its_backgroundjob(
    kubectl: Kubectl, ns: str, operator: Operator
) -> None:
    def sample(name: str, /, **labels: str) -> float | None:
        return metric(operator.metrics(), name, **labels)

    adds = sample("workqueue_adds_total", **QUEUE) or 0.0
    handled = sample("workqueue_work_duration_seconds_count", **QUEUE) or 0.0
    # Nothing listens on port 1 of loopback: every read of this broker is refused.
    refused = {"namespace": ns, "name": "refused", "backend": "redis"}
    kubectl.apply(
        bgjob(
            "refused",
            {
                "trigger": {"queue": {"redis": {"url": "redis://127.0.0.1:1/0", "list": "jobs"}}},
                "concurrency": 2,
            },
        ),
        ns,
    )
    kubectl.wait("bgj/refused", "condition=Degraded", ns, timeout=30)
    degraded = condition(kubectl.get("bgj", "refused", ns), "Degraded")
    assert degraded is not None and degraded["reason"] == "QueueUnreachable"
    eventually(lambda: (sample("bgjob_queue_probe_errors_total", **refused) or 0.0) >= 2)

    page = operator.metrics()
    assert (metric(page, "workqueue_adds_total", **QUEUE) or 0.0) > adds
    assert (metric(page, "workqueue_work_duration_seconds_count", **QUEUE) or 0.0) > handled
    assert metric(page, "workqueue_queue_duration_seconds_count", **QUEUE)
    assert metric(page, "workqueue_retries_total", **QUEUE) is not None
    assert metric(page, "workqueue_depth", **QUEUE) is not None
    assert metric(page, "workqueue_unfinished_work_seconds", **QUEUE) is not None
    assert metric(page, "workqueue_longest_running_processor_seconds", **QUEUE) is not None

    kubectl.run("delete", "bgj", "refused", "-n", ns)
    eventually(lambda: sample("bgjob_queue_probe_errors_total", **refused) is None)
