"""Runs to completion: once-runs, their results, and manual runs."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from tests.e2e.support import (
    RELEASE,
    SYSTEM_NAMESPACE,
    Kubectl,
    bgjob,
    condition,
    events,
    eventually,
)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_once_with_a_delay_starts_after_the_delay_and_not_before(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(bgjob("welcome", {"trigger": {"once": {"delaySeconds": 8}}}), ns)
    kubectl.wait("bgj/welcome", "condition=Ready", ns)
    waiting = kubectl.get("bgj", "welcome", ns)
    assert waiting["status"]["state"] == "Waiting"  # type: ignore[index]
    created = _time(waiting["metadata"]["creationTimestamp"])  # type: ignore[index]
    due = _time(waiting["status"]["nextRunTime"])  # type: ignore[index]
    assert (due - created).total_seconds() == 8
    time.sleep(4)
    assert kubectl.get("job", "welcome", ns) is None, "the run started before its delay"

    kubectl.wait("bgj/welcome", "condition=Complete", ns, timeout=60)
    job = kubectl.get("job", "welcome", ns)
    assert job is not None
    started = _time(job["metadata"]["creationTimestamp"])
    assert (started - created).total_seconds() >= 7  # timestamps have one-second resolution
    status = kubectl.get("bgj", "welcome", ns)["status"]  # type: ignore[index]
    assert status["state"] == "Succeeded"
    assert status["lastRun"]["result"] == "Succeeded"
    assert status["lastRun"]["name"] == "welcome"
    assert "nextRunTime" not in status
    reasons = [e["reason"] for e in events(kubectl, ns, "welcome")]
    assert "RunStarted" in reasons and "RunSucceeded" in reasons


def test_once_without_a_time_runs_now_and_exactly_once(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(bgjob("now", {"trigger": {"once": {}}, "concurrency": 3}), ns)
    kubectl.wait("bgj/now", "condition=Complete", ns, timeout=60)
    job = kubectl.get("job", "now", ns)
    assert job["spec"]["parallelism"] == 3  # type: ignore[index]
    # Editing the spec after the run does not start another.
    kubectl.run(
        "patch", "bgj", "now", "-n", ns, "--type=merge", "-p", '{"spec":{"image":"other:2"}}'
    )
    eventually(
        lambda: kubectl.get("bgj", "now", ns)["status"]["observedGeneration"] == 2  # type: ignore[index]
    )
    jobs = kubectl.json("get", "jobs", "-n", ns)["items"]
    assert [j["metadata"]["name"] for j in jobs] == ["now"]


def test_a_once_run_is_not_run_again_after_the_trigger_went_elsewhere_and_back(
    kubectl: Kubectl, ns: str
) -> None:
    kubectl.apply(bgjob("flip", {"trigger": {"once": {}}}), ns)
    kubectl.wait("bgj/flip", "condition=Complete", ns, timeout=60)
    patch = ["patch", "bgj", "flip", "-n", ns, "--type=merge", "-p"]
    # Continuous prunes the finished Job; then back to once.
    kubectl.run(*patch, '{"spec":{"trigger":{"once":null,"continuous":{}}}}')
    kubectl.wait("bgj/flip", "condition=Ready", ns, timeout=60)
    eventually(lambda: kubectl.get("job", "flip", ns) is None, timeout=30)
    kubectl.run(*patch, '{"spec":{"trigger":{"continuous":null,"once":{}}}}')
    eventually(
        lambda: kubectl.get("bgj", "flip", ns)["status"]["observedGeneration"] == 3,  # type: ignore[index]
        timeout=30,
    )
    time.sleep(3)  # a second run, if any, would have been created by now
    bgj = kubectl.get("bgj", "flip", ns)
    assert kubectl.json("get", "jobs", "-n", ns)["items"] == [], "the once-run ran again"
    started = [e for e in events(kubectl, ns, "flip") if e["reason"] == "RunStarted"]
    assert sum(e.get("count") or 1 for e in started) == 1, started
    assert bgj["status"]["state"] == "Succeeded", bgj["status"]  # type: ignore[index]
    assert bgj["status"]["lastRun"]["name"] == "flip"  # type: ignore[index]


def test_a_failing_once_run_reports_failed(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(
        bgjob(
            "doomed",
            {
                "trigger": {"once": {}},
                "run": {"backoffLimit": 0},
                "template": {"metadata": {"annotations": {"bgjob.dev/e2e-outcome": "fail"}}},
            },
        ),
        ns,
    )
    kubectl.wait("bgj/doomed", "condition=Failed", ns, timeout=60)
    bgj = kubectl.get("bgj", "doomed", ns)
    assert bgj["status"]["state"] == "Failed"  # type: ignore[index]
    assert bgj["status"]["lastRun"]["result"] == "Failed"  # type: ignore[index]
    assert condition(bgj, "Ready")["status"] == "False"  # type: ignore[index]
    assert condition(bgj, "Stalled")["status"] == "True"  # type: ignore[index]
    failures = [e for e in events(kubectl, ns, "doomed") if e["reason"] == "RunFailed"]
    assert failures and "BackoffLimitExceeded" in failures[0]["message"]


def test_a_failing_run_says_how_its_container_ended(kubectl: Kubectl, ns: str) -> None:
    # kwok's pod-fail stage (hack/kwok/stages.yaml) ends the worker with exit code 1,
    # reason Error, as a kubelet reports it; the operator reads it from the pod.
    kubectl.apply(
        bgjob(
            "exits-1",
            {
                "trigger": {"once": {}},
                "run": {"backoffLimit": 0},
                "template": {"metadata": {"annotations": {"bgjob.dev/e2e-outcome": "fail"}}},
            },
        ),
        ns,
    )
    kubectl.wait("bgj/exits-1", "condition=Failed", ns, timeout=60)
    pods = kubectl.json("get", "pods", "-n", ns, "-l", "batch.kubernetes.io/job-name=exits-1")
    [state] = [p["status"]["containerStatuses"][0]["state"] for p in pods["items"]]
    assert state["terminated"]["exitCode"] == 1
    last_run = kubectl.get("bgj", "exits-1", ns)["status"]["lastRun"]  # type: ignore[index]
    assert last_run["result"] == "Failed"
    assert last_run["reason"] == "BackoffLimitExceeded"
    assert last_run["exitCode"] == 1
    assert last_run["message"] == "container worker exited with code 1 (Error)"
    told = "run exits-1 failed: BackoffLimitExceeded: container worker exited with code 1 (Error)"
    failures = eventually(
        lambda: [e for e in events(kubectl, ns, "exits-1") if e["reason"] == "RunFailed"]
    )
    assert [e["message"] for e in failures] == [told]
    # Read once: another pass (an edit wakes it) lists no pods.
    kubectl.run("annotate", "bgj", "exits-1", "-n", ns, "example.com/touched=1")
    eventually(lambda: _operator_lists_of_pods(kubectl, ns, "exits-1"), timeout=15)
    time.sleep(3)
    assert _operator_lists_of_pods(kubectl, ns, "exits-1") == 1


def _operator_lists_of_pods(kubectl: Kubectl, ns: str, job: str) -> int:
    """How often the operator listed one run's pods, from the API server's audit log."""
    configured = os.environ.get("BGJOB_AUDIT_LOG")
    path = Path(configured) if configured else Path(kubectl.kubeconfig).parent / "logs/audit.log"
    selector = quote(f"batch.kubernetes.io/job-name={job}", safe="")
    count = 0
    for line in path.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if (
            event["user"]["username"] == f"system:serviceaccount:{SYSTEM_NAMESPACE}:{RELEASE}"
            and event["verb"] == "list"
            and ref.get("resource") == "pods"
            and ref.get("namespace") == ns
            and selector in event["requestURI"]
        ):
            count += 1
    return count


def test_run_now_annotation_starts_one_run_per_value(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(bgjob("report", {"trigger": {"schedule": {"cron": "0 0 1 1 *"}}}), ns)
    kubectl.wait("bgj/report", "condition=Ready", ns)
    kubectl.run("annotate", "bgj", "report", "-n", ns, "bgjob.dev/run-now=first")

    def manual_jobs() -> list[str]:
        items = kubectl.json("get", "jobs", "-n", ns, "-l", "bgjob.dev/run=manual")["items"]
        return [j["metadata"]["name"] for j in items]

    first = eventually(manual_jobs)
    assert len(first) == 1 and first[0].startswith("report-m")
    eventually(
        lambda: (
            (kubectl.get("bgj", "report", ns)["status"].get("lastRun") or {}).get("result")  # type: ignore[index]
            == "Succeeded"
        )
    )
    # The same value again starts nothing; a new value starts a second run.
    kubectl.run("annotate", "--overwrite", "bgj", "report", "-n", ns, "bgjob.dev/run-now=first")
    time.sleep(2)
    assert manual_jobs() == first
    kubectl.run("annotate", "--overwrite", "bgj", "report", "-n", ns, "bgjob.dev/run-now=second")
    eventually(lambda: len(manual_jobs()) == 2)


def test_a_manual_run_before_the_due_time_leaves_the_planned_run_alone(
    kubectl: Kubectl, ns: str
) -> None:
    kubectl.apply(bgjob("later", {"trigger": {"once": {"at": "2099-01-01T00:00:00Z"}}}), ns)
    kubectl.wait("bgj/later", "condition=Ready", ns)
    kubectl.run("annotate", "bgj", "later", "-n", ns, "bgjob.dev/run-now=try-it")
    eventually(
        lambda: (
            (kubectl.get("bgj", "later", ns)["status"].get("lastRun") or {}).get("result")  # type: ignore[index]
            == "Succeeded"
        )
    )
    bgj = kubectl.get("bgj", "later", ns)
    assert bgj["status"]["state"] == "Waiting"  # type: ignore[index]
    assert bgj["status"]["nextRunTime"] == "2099-01-01T00:00:00Z"  # type: ignore[index]
    assert condition(bgj, "Complete") is None
    assert kubectl.get("job", "later", ns) is None
