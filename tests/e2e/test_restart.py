"""An operator restarted mid-way converges with no duplicates."""

from __future__ import annotations

from tests.e2e.support import Kubectl, Operator, bgjob, eventually


def test_work_created_while_the_operator_is_down_converges_once(
    kubectl: Kubectl, ns: str, operator: Operator
) -> None:
    kubectl.apply(bgjob("before", {"trigger": {"continuous": {}}}), ns)
    kubectl.wait("bgj/before", "condition=Ready", ns)
    operator.stop()
    try:
        kubectl.apply(bgjob("during", {"trigger": {"continuous": {}}, "concurrency": 2}), ns)
        kubectl.apply(bgjob("oneshot", {"trigger": {"once": {}}}), ns)
        kubectl.run("delete", "deployment", "before", "-n", ns)
    finally:
        operator.start()
    kubectl.wait("bgj/during", "condition=Ready", ns)
    kubectl.wait("bgj/before", "condition=Ready", ns)
    kubectl.wait("bgj/oneshot", "condition=Complete", ns)
    # A second restart must not start the finished once-run again.
    operator.stop()
    operator.start()
    eventually(lambda: kubectl.get("bgj", "during", ns)["status"]["readyReplicas"] == 2)  # type: ignore[index]
    jobs = kubectl.json("get", "jobs", "-n", ns)["items"]
    assert [j["metadata"]["name"] for j in jobs] == ["oneshot"]
    deployments = kubectl.json("get", "deployments", "-n", ns)["items"]
    assert sorted(d["metadata"]["name"] for d in deployments) == ["before", "during"]
