"""The operator keeps the cluster as the spec says: hand edits, trigger changes, deletion."""

from __future__ import annotations

import time

from tests.e2e.support import Kubectl, Operator, bgjob, eventually, metric


def test_a_deleted_child_comes_back(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(bgjob("sturdy", {"trigger": {"continuous": {}}}), ns)
    kubectl.wait("bgj/sturdy", "condition=Ready", ns)
    first_uid = kubectl.get("deployment", "sturdy", ns)["metadata"]["uid"]  # type: ignore[index]
    kubectl.run("delete", "deployment", "sturdy", "-n", ns)
    recreated = eventually(
        lambda: (d := kubectl.get("deployment", "sturdy", ns)) and d["metadata"]["uid"] != first_uid
    )
    assert recreated
    kubectl.wait("bgj/sturdy", "condition=Ready", ns)


def test_a_hand_scaled_child_is_scaled_back(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(bgjob("steady", {"trigger": {"continuous": {}}, "concurrency": 2}), ns)
    kubectl.wait("bgj/steady", "condition=Ready", ns)
    kubectl.run("scale", "deployment", "steady", "-n", ns, "--replicas=5")
    eventually(lambda: kubectl.get("deployment", "steady", ns)["spec"]["replicas"] == 2)  # type: ignore[index]


def test_changing_the_trigger_replaces_the_child(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(bgjob("shifty", {"trigger": {"continuous": {}}}), ns)
    kubectl.wait("bgj/shifty", "condition=Ready", ns)
    kubectl.run(
        "patch",
        "bgj",
        "shifty",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec":{"trigger":{"continuous":null,"schedule":{"cron":"0 3 * * *"}}}}',
    )
    eventually(lambda: kubectl.get("cronjob", "shifty", ns) is not None)
    eventually(lambda: kubectl.get("deployment", "shifty", ns) is None)
    eventually(
        lambda: (
            not kubectl.json("get", "pods", "-n", ns, "-l", "app.kubernetes.io/instance=shifty")[
                "items"
            ]
        )
    )
    status = kubectl.get("bgj", "shifty", ns)["status"]  # type: ignore[index]
    assert status["workload"]["kind"] == "CronJob"
    assert status["trigger"] == "schedule"


def test_turning_on_singleton_moves_to_a_statefulset_without_overlap(
    kubectl: Kubectl, ns: str
) -> None:
    kubectl.apply(bgjob("solo", {"trigger": {"continuous": {}}}), ns)
    kubectl.wait("bgj/solo", "condition=Ready", ns)
    kubectl.run(
        "patch", "bgj", "solo", "-n", ns, "--type=merge", "-p", '{"spec":{"singleton":true}}'
    )
    eventually(lambda: kubectl.get("statefulset", "solo", ns) is not None, timeout=60)
    assert kubectl.get("deployment", "solo", ns) is None, "both workloads existed at once"
    kubectl.wait("bgj/solo", "condition=Ready", ns)


def test_deleting_the_backgroundjob_garbage_collects_its_children(
    kubectl: Kubectl, ns: str
) -> None:
    kubectl.apply(bgjob("brief", {"trigger": {"continuous": {}}}), ns)
    kubectl.wait("bgj/brief", "condition=Ready", ns)
    bgj = kubectl.get("bgj", "brief", ns)
    assert not bgj["metadata"].get("finalizers"), "no finalizer is needed"  # type: ignore[index]
    kubectl.run("delete", "bgj", "brief", "-n", ns)
    eventually(lambda: kubectl.get("deployment", "brief", ns) is None, timeout=60)
    eventually(
        lambda: (
            not kubectl.json("get", "pods", "-n", ns, "-l", "app.kubernetes.io/instance=brief")[
                "items"
            ]
        ),
        timeout=60,
    )


def test_a_second_reconcile_writes_nothing(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(bgjob("quiet", {"trigger": {"continuous": {}}}), ns)
    kubectl.wait("bgj/quiet", "condition=Ready", ns)
    time.sleep(2)  # let the last status write settle
    before_child = kubectl.get("deployment", "quiet", ns)["metadata"]["resourceVersion"]  # type: ignore[index]
    # An annotation change is an event that makes the operator reconcile again.
    kubectl.run("annotate", "bgj", "quiet", "-n", ns, "example.com/touched=yes")
    touched = kubectl.get("bgj", "quiet", ns)["metadata"]["resourceVersion"]  # type: ignore[index]
    time.sleep(3)
    assert kubectl.get("deployment", "quiet", ns)["metadata"]["resourceVersion"] == before_child  # type: ignore[index]
    assert kubectl.get("bgj", "quiet", ns)["metadata"]["resourceVersion"] == touched  # type: ignore[index]


def test_a_periodic_resync_reconciles_everything_and_writes_nothing(
    kubectl: Kubectl, ns: str, operator: Operator
) -> None:
    kubectl.apply(bgjob("idle", {"trigger": {"continuous": {}}}), ns)
    kubectl.apply(bgjob("nightly", {"trigger": {"schedule": {"cron": "0 3 * * *"}}}), ns)
    kubectl.wait("bgj/idle", "condition=Ready", ns)
    kubectl.wait("bgj/nightly", "condition=Ready", ns)
    operator.stop()
    resyncing = Operator(
        operator.kubeconfig,
        operator.log_path.with_name("operator-resync.log"),
        args=("--resync-seconds=1", f"--namespace={ns}"),
    )
    resyncing.start()
    try:
        time.sleep(3)  # the start-up pass and its status writes settle

        def versions() -> list[str]:
            return [
                kubectl.get(kind, name, ns)["metadata"]["resourceVersion"]  # type: ignore[index]
                for kind, name in (
                    ("bgj", "idle"),
                    ("deployment", "idle"),
                    ("bgj", "nightly"),
                    ("cronjob", "nightly"),
                )
            ]

        before = versions()
        passes = metric(resyncing.metrics(), "bgjob_reconcile_total", result="success") or 0.0
        time.sleep(5)
        after = metric(resyncing.metrics(), "bgjob_reconcile_total", result="success") or 0.0
        assert after - passes >= 6, "two BackgroundJobs, resynced every second for 5 s"
        assert versions() == before, "a resync of unchanged objects wrote something"
        print(f"resync: {after - passes:.0f} reconciles in 5 s, 0 writes")
    finally:
        resyncing.stop()
        operator.start()
