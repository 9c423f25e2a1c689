"""Each trigger becomes its native workload, with the contract's fields, and reports Ready."""

from __future__ import annotations

from tests.e2e.support import Kubectl, bgjob, condition, eventually


def test_continuous_becomes_a_ready_deployment(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(
        bgjob(
            "orders",
            {
                "trigger": {"continuous": {}},
                "concurrency": 2,
                "env": [{"name": "LOG_LEVEL", "value": "debug"}],
                "shutdown": {"gracePeriodSeconds": 45},
            },
        ),
        ns,
    )
    kubectl.wait("bgj/orders", "condition=Ready", ns)

    deployment = kubectl.get("deployment", "orders", ns)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("BackgroundJob", "orders", True)
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "bgjob-operator"
    assert labels["app.kubernetes.io/instance"] == "orders"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 45
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env == {"LOG_LEVEL": "debug", "BGJOB_SHUTDOWN_TIMEOUT_SECONDS": "45"}

    status = kubectl.get("bgj", "orders", ns)["status"]  # type: ignore[index]
    assert status["state"] == "Running"
    assert (status["readyReplicas"], status["desiredReplicas"]) == (2, 2)
    assert status["workload"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "orders"}
    assert status["observedGeneration"] == 1
    pods = kubectl.json("get", "pods", "-n", ns, "-l", "app.kubernetes.io/instance=orders")
    assert [p["status"]["phase"] for p in pods["items"]] == ["Running", "Running"]


def test_singleton_continuous_is_a_one_replica_statefulset(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(bgjob("leader", {"trigger": {"continuous": {}}, "singleton": True}), ns)
    kubectl.wait("bgj/leader", "condition=Ready", ns)

    statefulset = kubectl.get("statefulset", "leader", ns)
    assert statefulset is not None
    assert statefulset["spec"]["replicas"] == 1
    assert statefulset["spec"]["podManagementPolicy"] == "OrderedReady"
    assert kubectl.get("deployment", "leader", ns) is None
    status = kubectl.get("bgj", "leader", ns)["status"]  # type: ignore[index]
    assert status["workload"]["kind"] == "StatefulSet"
    assert status["readyReplicas"] == 1


def test_schedule_becomes_a_cronjob_whose_runs_are_reported(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(
        bgjob(
            "minutely",
            {
                "trigger": {"schedule": {"cron": "* * * * *"}},
                "concurrency": 2,
                "history": {"successfulRuns": 2, "failedRuns": 1},
            },
        ),
        ns,
    )
    kubectl.wait("bgj/minutely", "condition=Ready", ns)
    cronjob = kubectl.get("cronjob", "minutely", ns)
    assert cronjob is not None
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["jobTemplate"]["spec"]["parallelism"] == 2
    assert cronjob["spec"]["successfulJobsHistoryLimit"] == 2
    status = kubectl.get("bgj", "minutely", ns)["status"]  # type: ignore[index]
    assert status["state"] in ("Scheduled", "Running")
    assert status["nextRunTime"].endswith("Z")

    # The CronJob controller starts a run at the next minute; kwok completes it.
    def succeeded() -> dict | None:
        last = kubectl.get("bgj", "minutely", ns)["status"].get("lastRun")  # type: ignore[index]
        return last if last and last.get("result") == "Succeeded" else None

    last = eventually(succeeded, timeout=100, interval=2)
    assert last["name"].startswith("minutely-")
    assert kubectl.get("bgj", "minutely", ns)["status"]["lastScheduleTime"]  # type: ignore[index]


def test_schedule_overlap_and_singleton_map_to_the_concurrency_policy(
    kubectl: Kubectl, ns: str
) -> None:
    kubectl.apply(
        bgjob("replacer", {"trigger": {"schedule": {"cron": "0 3 * * *"}}, "overlap": "Replace"}),
        ns,
    )
    kubectl.apply(
        bgjob(
            "lonely",
            {"trigger": {"schedule": {"cron": "0 3 * * *"}}, "singleton": True, "overlap": "Allow"},
        ),
        ns,
    )
    kubectl.wait("bgj/replacer", "condition=Ready", ns)
    kubectl.wait("bgj/lonely", "condition=Ready", ns)
    assert kubectl.get("cronjob", "replacer", ns)["spec"]["concurrencyPolicy"] == "Replace"  # type: ignore[index]
    lonely = kubectl.get("cronjob", "lonely", ns)
    assert lonely["spec"]["concurrencyPolicy"] == "Forbid"  # type: ignore[index]
    assert lonely["spec"]["jobTemplate"]["spec"]["parallelism"] == 1  # type: ignore[index]


def test_suspend_scales_a_continuous_worker_to_zero(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(bgjob("pausable", {"trigger": {"continuous": {}}, "concurrency": 2}), ns)
    kubectl.wait("bgj/pausable", "condition=Ready", ns)
    kubectl.run(
        "patch", "bgj", "pausable", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    eventually(
        lambda: kubectl.get("bgj", "pausable", ns)["status"]["state"] == "Suspended"  # type: ignore[index]
    )
    assert kubectl.get("deployment", "pausable", ns)["spec"]["replicas"] == 0  # type: ignore[index]
    bgj = kubectl.get("bgj", "pausable", ns)
    assert condition(bgj, "Ready")["status"] == "True"  # type: ignore[index]
