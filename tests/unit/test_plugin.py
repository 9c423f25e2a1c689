"""`kubectl bgj`'s decisions, without a cluster: run-now values, which pods, what `why` says."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from specs import ONCE, SCHEDULE, bgjob

from bgjob.plugin import Failure, explain, parser, pick_pods, run_now_value
from bgjob.status import Observed, Problem, status_from

NOW = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("annotation", "handled", "now", "expected"),
    [
        pytest.param(None, None, 1_800_000_000.7, "1800000000", id="first request: the time"),
        pytest.param("1800000000", "1800000000", 1_800_000_000.2, "1800000001", id="same second"),
        pytest.param("8", "8", 1_800_000_000, "1800000000", id="counter from Argo CD: time wins"),
        pytest.param("first", "first", 1_800_000_000, "1800000000", id="words are ignored"),
        pytest.param(None, "1900000000", 1_800_000_000, "1900000001", id="clock behind"),
    ],
)
def test_a_run_now_value_is_one_the_operator_has_not_handled(
    annotation: str | None, handled: str | None, now: float, expected: str
) -> None:
    value = run_now_value(annotation, handled, now)
    assert value == expected
    assert value not in (annotation, handled)


def pod(name: str, job: str | None = None) -> dict[str, Any]:
    labels = {"app.kubernetes.io/instance": "worker"}
    if job:
        labels["batch.kubernetes.io/job-name"] = job
    return {"metadata": {"name": name, "labels": labels}}


PODS = [pod("worker-7d9-abc"), pod("worker-m1-x", "worker-m1"), pod("worker-m2-y", "worker-m2")]


def with_status(spec_trigger: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "worker"}, "spec": {"trigger": spec_trigger}, "status": status}


@pytest.mark.parametrize(
    ("bgj", "which", "what", "pods"),
    [
        (with_status(SCHEDULE, activeRuns=["worker-m2"]), "auto", "run worker-m2", ["worker-m2-y"]),
        (with_status(SCHEDULE, lastRun={"name": "worker-m1"}), "auto",
         "run worker-m1", ["worker-m1-x"]),
        (with_status(SCHEDULE, activeRuns=["worker-m2"], lastRun={"name": "worker-m1"}), "last",
         "run worker-m1", ["worker-m1-x"]),
        (with_status({"continuous": {}}), "auto", "the workers", ["worker-7d9-abc"]),
        (with_status(ONCE, activeRuns=["worker-m2"]), "workers", "the workers", ["worker-7d9-abc"]),
    ],
)  # fmt: skip
def test_logs_picks_the_pods_of_the_run_or_the_workers(
    bgj: dict[str, Any], which: str, what: str, pods: list[str]
) -> None:
    found_what, found = pick_pods(bgj, PODS, which)
    assert (found_what, [p["metadata"]["name"] for p in found]) == (what, pods)


def test_logs_says_when_there_is_no_run_to_show() -> None:
    with pytest.raises(Failure, match="worker has no finished run yet"):
        pick_pods(with_status(SCHEDULE), PODS, "auto")
    with pytest.raises(Failure, match=r"worker has no run in progress \(try --last\)"):
        pick_pods(with_status(SCHEDULE), PODS, "current")


def as_object(status: Any, generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "worker", "generation": generation},
        "spec": {"trigger": SCHEDULE},
        "status": status.wire(),
    }


def test_why_answers_first_then_shows_the_evidence() -> None:
    problem = Problem("InvalidTimeZone", "spec.trigger.schedule.timeZone: unknown time zone")
    status = status_from(bgjob(trigger=SCHEDULE), Observed(), NOW, problem=problem)
    event = {
        "type": "Warning",
        "reason": "InvalidTimeZone",
        "message": "spec.trigger.schedule.timeZone: unknown time zone",
        "lastTimestamp": "2026-01-14T23:58:00Z",
        "involvedObject": {"kind": "BackgroundJob", "name": "worker"},
    }
    lines = explain(as_object(status), None, [event], NOW)
    assert lines[0] == (
        "worker is not Ready: InvalidTimeZone: spec.trigger.schedule.timeZone: unknown time zone"
    )
    assert lines[1] == "State: Degraded   Trigger: schedule"
    assert lines[2] == "Conditions:"
    assert lines[3].split() == ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]
    assert lines[4].split()[:4] == ["Ready", "False", "InvalidTimeZone", "0s"]
    assert [line.split()[0] for line in lines[4:8]] == [
        "Ready",
        "Progressing",
        "Degraded",
        "Stalled",
    ]
    assert lines[8] == "Events:"
    assert lines[10].split()[:4] == ["2m", "Warning", "InvalidTimeZone", "backgroundjob/worker"]


def test_why_says_when_the_status_is_for_an_older_spec() -> None:
    status = status_from(bgjob(trigger=SCHEDULE), Observed(), NOW)
    lines = explain(as_object(status, generation=2), None, [], NOW)
    assert lines[0] == (
        "worker: the operator has not yet seen generation 2 (the status is for generation 1)"
    )
    assert lines[-1] == "Events: none"
    no_status = {"metadata": {"name": "worker"}, "spec": {"trigger": SCHEDULE}}
    assert explain(no_status, None, [], NOW)[0] == (
        "worker has no status yet: is the operator running?"
    )


def test_why_shows_the_workload_and_its_conditions() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "worker", "generation": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "readyReplicas": 1,
            "updatedReplicas": 2,
            "conditions": [
                {
                    "type": "Available",
                    "status": "False",
                    "reason": "MinimumReplicasUnavailable",
                    "message": "Deployment does not have minimum availability.",
                    "lastTransitionTime": "2026-01-14T23:00:00Z",
                }
            ],
        },
    }
    status = status_from(
        bgjob(trigger={"continuous": {}}, concurrency=2), Observed(deployment), NOW,
        desired_replicas=2,
    )  # fmt: skip
    obj = as_object(status)
    lines = explain(obj, deployment, [], NOW)
    assert lines[0] == "worker is not Ready: WaitingForPods: 1 of 2 pods ready"
    at = lines.index("Workload: Deployment worker")
    assert lines[at + 1] == "  replicas=2 readyReplicas=1 updatedReplicas=2"
    assert lines[at + 3].split()[:4] == ["Available", "False", "MinimumReplicasUnavailable", "1h"]
    assert explain(obj, None, [], NOW)[at] == "Workload: Deployment worker (not found)"


def test_kubectl_flags_work_before_and_after_the_subcommand() -> None:
    args = parser().parse_args(["-n", "a", "--context", "c", "why", "x"])
    assert (args.namespace, args.context, args.kubeconfig, args.name) == ("a", "c", None, "x")
    args = parser().parse_args(["why", "x", "-n", "b", "--kubeconfig", "k"])
    assert (args.namespace, args.context, args.kubeconfig) == ("b", None, "k")
    args = parser().parse_args(["logs", "x", "--last", "--tail", "5"])
    assert (args.which, args.tail) == ("last", 5)


def test_the_namespace_comes_from_the_flag_else_the_context(tmp_path: Path) -> None:
    from bgjob.plugin import Cluster

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        """
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: u
  user: {token: t}
contexts:
- name: team-a
  context: {cluster: c, user: u, namespace: team-a}
- name: plain
  context: {cluster: c, user: u}
current-context: team-a
"""
    )

    def namespace(*argv: str) -> str:
        args = parser().parse_args([*argv, "why", "x", f"--kubeconfig={kubeconfig}"])
        return Cluster.connect(args).namespace

    assert namespace() == "team-a"
    assert namespace("--context", "plain") == "default"
    assert namespace("--context", "plain", "-n", "b") == "b"
    with pytest.raises(Failure, match="cannot load the kubeconfig"):
        namespace("--context", "missing")
