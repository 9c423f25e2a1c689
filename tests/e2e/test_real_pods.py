"""Real containers on the real kubelet node: signals, grace periods, exit codes.

kwok simulates the pod lifecycle; here containerd and runc run the worker, so
what is measured is what a user's worker would see. Every pod tolerates the
node's taint and selects it (support.on_real_node); the worker writes what it
sees, with timestamps from the shared host clock, to an emptyDir that the test
follows from the host (support.FileTail).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import (
    REAL_NODE,
    REPO,
    FileTail,
    Kubectl,
    PodWatch,
    RealNode,
    bgjob,
    events,
    eventually,
    on_real_node,
)

pytestmark = pytest.mark.real_node

# A worker that logs `start`, a `beat` every 50 ms, `term` on SIGTERM; with
# MODE=finish it then finishes its work in 1 s and exits 0, with MODE=ignore it
# carries on until it is killed.
WORKER = r"""
import os, signal, sys, time
out = open("/shared/events", "a", buffering=1)
def say(what):
    out.write(f"{what} {time.time():.3f} {os.environ.get('BGJOB_SHUTDOWN_TIMEOUT_SECONDS')}\n")
def on_term(signum, frame):
    say("term")
    if os.environ["MODE"] == "finish":
        time.sleep(1.0)
        say("exit")
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
say("start")
while True:
    say("beat")
    time.sleep(0.05)
"""


def _results(line: str) -> None:
    """Measured figures go to the log dir (and the test's output)."""
    print(line)
    log_dir = Path(os.environ.get("BGJOB_E2E_LOGS", REPO / ".cluster" / "logs"))
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "real-pods-results.txt", "a") as f:
        f.write(line + "\n")


def _worker(real_node: RealNode, name: str, mode: str, grace: int, pre_stop: int) -> dict[str, Any]:
    return bgjob(
        name,
        {
            "image": real_node.image("python:3"),
            "command": ["python3", "-c", WORKER],
            "env": [{"name": "MODE", "value": mode}],
            "trigger": {"continuous": {}},
            "shutdown": {"gracePeriodSeconds": grace, "preStopSleepSeconds": pre_stop},
            "template": {
                "spec": on_real_node(
                    {
                        "securityContext": {"runAsUser": 65534, "runAsGroup": 65534},
                        "volumes": [{"name": "shared", "emptyDir": {}}],
                        "containers": [
                            {
                                "name": "worker",
                                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                            }
                        ],
                    }
                )
            },
        },
    )


def _running_pod(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        pods = kubectl.json("get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}")[
            "items"
        ]
        for pod in pods:
            statuses = pod["status"].get("containerStatuses") or []
            if statuses and "running" in statuses[0]["state"]:
                found: dict[str, Any] = pod
                return found
        return None

    return eventually(running, timeout=120, interval=0.2)


def _events(tail: FileTail, kind: str) -> list[float]:
    return [float(line.split()[1]) for line in tail.poll() if line.split()[0] == kind]


def _start_and_stop(
    kubectl: Kubectl, ns: str, real_node: RealNode, name: str, mode: str, grace: int, pre_stop: int
) -> tuple[FileTail, PodWatch, float, float]:
    """Start one worker on the real node, delete its pod; return what it wrote,
    the pod's states, the time of the delete and the time the pod was gone."""
    applied = time.time()
    kubectl.apply(_worker(real_node, name, mode, grace, pre_stop), ns)
    pod = _running_pod(kubectl, ns, name)
    assert pod["spec"]["nodeName"] == REAL_NODE
    assert pod["spec"]["terminationGracePeriodSeconds"] == grace + pre_stop
    tail = FileTail(real_node.empty_dir(pod["metadata"]["uid"], "shared") / "events")
    started = eventually(lambda: _events(tail, "start"), timeout=30, interval=0.05)[0]
    _results(f"{name}: BackgroundJob applied -> worker process started: {started - applied:.2f}s")
    pod_name = pod["metadata"]["name"]
    watch = PodWatch(kubectl, ns, pod_name)
    time.sleep(0.5)
    deleted = time.time()
    kubectl.run("delete", "pod", pod_name, "-n", ns, "--wait=false")
    timeout = grace + pre_stop + 30

    def gone() -> bool:
        tail.poll()
        return kubectl.get("pod", pod_name, ns) is None

    eventually(gone, timeout=timeout, interval=0.1)
    gone_at = time.time()
    tail.poll()
    watch.stop()
    tail.close()
    return tail, watch, deleted, gone_at


def test_sigterm_comes_after_the_pre_stop_sleep_and_sigkill_not_before_the_budget(
    kubectl: Kubectl, ns: str, real_node: RealNode
) -> None:
    grace, pre_stop = 5, 3
    tail, watch, deleted, gone = _start_and_stop(
        kubectl, ns, real_node, "stubborn", "ignore", grace, pre_stop
    )
    (term,) = _events(tail, "term")
    last_beat = max(_events(tail, "beat"))
    assert tail.lines[0].split()[2] == str(grace), "the worker is told its budget"
    _results(
        f"stubborn: delete -> SIGTERM {term - deleted:.2f}s (preStop sleep {pre_stop}s); "
        f"SIGTERM -> last sign of life {last_beat - term:.2f}s (budget {grace}s); "
        f"delete -> pod gone {gone - deleted:.2f}s"
    )
    # preStop first: SIGTERM only after its sleep.
    assert term - deleted >= pre_stop - 0.05
    # The worker keeps its whole budget after SIGTERM (50 ms beats; a loaded
    # machine may delay the last one a little): no SIGKILL before it...
    assert last_beat - term >= grace - 0.5
    # ...and then it is killed: it never got to exit by itself.
    assert not _events(tail, "exit")
    assert last_beat - term < grace + 5
    terminated = watch.terminated()
    assert terminated is not None, "the pod's final state was never reported"
    assert terminated["exitCode"] == 137  # SIGKILL


def test_a_worker_that_finishes_in_time_exits_0_without_a_kill(
    kubectl: Kubectl, ns: str, real_node: RealNode
) -> None:
    grace = 20
    tail, watch, deleted, gone = _start_and_stop(
        kubectl, ns, real_node, "polite", "finish", grace, 0
    )
    (term,) = _events(tail, "term")
    (exited,) = _events(tail, "exit")
    _results(
        f"polite: delete -> SIGTERM {term - deleted:.2f}s; SIGTERM -> exit 0 {exited - term:.2f}s; "
        f"delete -> pod gone {gone - deleted:.2f}s (grace {grace}s)"
    )
    assert 0.9 <= exited - term < 3
    # Gone long before the grace period would have ended in a kill.
    assert gone - deleted < grace / 2
    terminated = watch.terminated()
    assert terminated is not None, "the pod's final state was never reported"
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")


def _run_pod(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    pods = kubectl.json("get", "pods", "-n", ns, "-l", f"job-name={name}")["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    assert pods[0]["spec"]["nodeName"] == REAL_NODE
    pod: dict[str, Any] = pods[0]
    return pod


def _failed_run(kubectl: Kubectl, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    kubectl.apply(
        bgjob(
            name,
            {
                "trigger": {"once": {}},
                "run": {"backoffLimit": 0},
                "template": {"spec": on_real_node({"securityContext": {"runAsUser": 65534}})},
                **spec,
            },
        ),
        ns,
    )
    kubectl.wait(f"bgj/{name}", "condition=Failed", ns, timeout=120)
    status: dict[str, Any] = kubectl.get("bgj", name, ns)["status"]  # type: ignore[index]
    return status


def _run_failed_event(kubectl: Kubectl, ns: str, name: str) -> str:
    """The one RunFailed Event's message (sent right after the status is written)."""
    failures = eventually(
        lambda: [e for e in events(kubectl, ns, name) if e["reason"] == "RunFailed"], timeout=15
    )
    assert len(failures) == 1, [e["message"] for e in failures]
    message: str = failures[0]["message"]
    return message


def test_a_failing_runs_real_exit_code(kubectl: Kubectl, ns: str, real_node: RealNode) -> None:
    status = _failed_run(
        kubectl,
        ns,
        "exits-42",
        {"image": real_node.image("busybox:1"), "command": ["sh", "-c", "echo failing; exit 42"]},
    )
    terminated = _run_pod(kubectl, ns, "exits-42")["status"]["containerStatuses"][0]["state"]
    assert terminated["terminated"]["exitCode"] == 42
    assert terminated["terminated"]["reason"] == "Error"
    assert kubectl.run("logs", "job/exits-42", "-n", ns).stdout == "failing\n"
    # The operator reports the real exit code, read from the run's pod.
    last_run = status["lastRun"]
    _results(f"exits-42: lastRun={json.dumps(last_run)}")
    assert (last_run["result"], last_run["reason"]) == ("Failed", "BackoffLimitExceeded")
    assert last_run["exitCode"] == 42
    assert last_run["message"] == "container worker exited with code 42 (Error)"
    failure = _run_failed_event(kubectl, ns, "exits-42")
    assert failure == (
        "run exits-42 failed: BackoffLimitExceeded: container worker exited with code 42 (Error)"
    )
    _results(f"exits-42: RunFailed event: {failure}")


def test_an_oom_killed_run(kubectl: Kubectl, ns: str, real_node: RealNode) -> None:
    status = _failed_run(
        kubectl,
        ns,
        "hungry",
        {
            "image": real_node.image("python:3"),
            "command": ["python3", "-c", "b = b'x' * (512 << 20); print(len(b))"],
            "resources": {"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}},
        },
    )
    terminated = _run_pod(kubectl, ns, "hungry")["status"]["containerStatuses"][0]["state"]
    assert terminated["terminated"]["reason"] == "OOMKilled"
    assert terminated["terminated"]["exitCode"] == 137
    last_run = status["lastRun"]
    _results(f"hungry: lastRun={json.dumps(last_run)}")
    assert (last_run["result"], last_run["reason"]) == ("Failed", "OOMKilled")
    assert last_run["exitCode"] == 137
    assert last_run["message"] == "container worker was OOMKilled (exit code 137)"
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "OOMKilled"
    failure = _run_failed_event(kubectl, ns, "hungry")
    assert failure == "run hungry failed: OOMKilled: container worker was OOMKilled (exit code 137)"
    _results(f"hungry: RunFailed event: {failure}")


def test_kubectl_exec_reaches_a_container_on_the_real_node(
    kubectl: Kubectl, ns: str, real_node: RealNode
) -> None:
    kubectl.apply(
        bgjob(
            "shell",
            {
                "image": real_node.image("busybox:1"),
                "command": ["sleep", "3600"],
                "trigger": {"continuous": {}},
                "shutdown": {"gracePeriodSeconds": 0},
                "template": {"spec": on_real_node({"securityContext": {"runAsUser": 65534}})},
            },
        ),
        ns,
    )
    pod = _running_pod(kubectl, ns, "shell")
    out = kubectl.run("exec", pod["metadata"]["name"], "-n", ns, "--", "id", "-u").stdout
    assert out.strip() == "65534"


def test_a_singletons_rollout_never_overlaps_two_real_workers(
    kubectl: Kubectl, ns: str, real_node: RealNode
) -> None:
    manifest = _worker(real_node, "solo", "finish", grace=10, pre_stop=0)
    manifest["spec"]["singleton"] = True
    kubectl.apply(manifest, ns)
    first = _running_pod(kubectl, ns, "solo")
    old = FileTail(real_node.empty_dir(first["metadata"]["uid"], "shared") / "events")
    eventually(lambda: _events(old, "start"), timeout=30, interval=0.05)

    # A rollout: a new pod template (one more env var).
    manifest["spec"]["env"].append({"name": "ROLLOUT", "value": "2"})
    kubectl.apply(manifest, ns)

    def replacement() -> dict[str, Any] | None:
        old.poll()  # keep reading the old worker until it is gone
        pod = _running_pod(kubectl, ns, "solo")
        return pod if pod["metadata"]["uid"] != first["metadata"]["uid"] else None

    second = eventually(replacement, timeout=120, interval=0.2)
    new = FileTail(real_node.empty_dir(second["metadata"]["uid"], "shared") / "events")
    (new_start,) = eventually(lambda: _events(new, "start"), timeout=30, interval=0.05)
    old.close()
    new.close()
    old_last = max(float(line.split()[1]) for line in old.lines)
    _results(
        f"solo (singleton rollout): old worker's last line -> new worker started "
        f"{new_start - old_last:.2f}s later"
    )
    assert new_start > old_last, "two workers of a singleton ran at the same time"
    assert _events(old, "exit"), "the old worker was killed instead of stopping gracefully"


# A run's worker: logs `start`, a `beat` every 50 ms for RUN_SECONDS, `exit`, exits 0;
# on SIGTERM it logs `term` and exits 0 at once.
RUN_WORKER = r"""
import os, signal, sys, time
out = open("/shared/events", "a", buffering=1)
def say(what):
    out.write(f"{what} {time.time():.3f}\n")
def on_term(signum, frame):
    say("term")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
say("start")
end = time.time() + float(os.environ["RUN_SECONDS"])
while time.time() < end:
    say("beat")
    time.sleep(0.05)
say("exit")
"""


def _run_worker(real_node: RealNode, name: str, trigger: dict[str, Any], seconds: int) -> Any:
    """A singleton on the real node whose every container logs its life to its emptyDir."""
    return bgjob(
        name,
        {
            "image": real_node.image("python:3"),
            "command": ["python3", "-c", RUN_WORKER],
            "env": [{"name": "RUN_SECONDS", "value": str(seconds)}],
            "trigger": trigger,
            "singleton": True,
            "shutdown": {"gracePeriodSeconds": 5},
            "template": {
                "spec": on_real_node(
                    {
                        "securityContext": {"runAsUser": 65534, "runAsGroup": 65534},
                        "volumes": [{"name": "shared", "emptyDir": {}}],
                        "containers": [
                            {
                                "name": "worker",
                                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                            }
                        ],
                    }
                )
            },
        },
    )


class Lives:
    """Every container of one BackgroundJob on the real node, from its own log: when it
    started and its last line. Pods are found by label as they appear and their
    emptyDir files kept open, so a container's lines are read after its pod is gone."""

    def __init__(self, kubectl: Kubectl, ns: str, name: str, real_node: RealNode) -> None:
        self.kubectl, self.ns, self.name, self.real_node = kubectl, ns, name, real_node
        self.tails: dict[str, FileTail] = {}

    def poll(self) -> None:
        pods = self.kubectl.json(
            "get", "pods", "-n", self.ns, "-l", f"app.kubernetes.io/instance={self.name}"
        )["items"]
        for pod in pods:
            name = pod["metadata"]["name"]
            if name not in self.tails:
                path = self.real_node.empty_dir(pod["metadata"]["uid"], "shared") / "events"
                self.tails[name] = FileTail(path)
        for tail in self.tails.values():
            tail.poll()

    def watch(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poll()
            time.sleep(0.1)

    def spans(self) -> dict[str, tuple[float, float]]:
        """Per pod whose container started: (first line, last line), host clock."""
        out = {}
        for pod, tail in self.tails.items():
            stamps = [float(line.split()[1]) for line in tail.poll()]
            if stamps:
                out[pod] = (min(stamps), max(stamps))
        return out

    def close(self) -> None:
        for tail in self.tails.values():
            tail.close()


def _overlaps(spans: dict[str, tuple[float, float]]) -> list[tuple[str, str]]:
    ordered = sorted(spans.items(), key=lambda item: item[1][0])
    return [
        (a, b)
        for i, (a, (_, a_end)) in enumerate(ordered)
        for b, (b_start, _) in ordered[i + 1 :]
        if b_start <= a_end
    ]


def test_a_singleton_once_run_to_continuous_never_overlaps_two_real_workers(
    kubectl: Kubectl, ns: str, real_node: RealNode
) -> None:
    manifest = _run_worker(real_node, "flip", {"once": {}}, seconds=600)
    kubectl.apply(manifest, ns)
    lives = Lives(kubectl, ns, "flip", real_node)
    try:
        eventually(lambda: (lives.poll(), lives.spans())[1], timeout=60, interval=0.1)
        changed = time.time()
        kubectl.run(
            "patch", "bgj", "flip", "-n", ns, "--type=merge", "-p",
            json.dumps({"spec": {"trigger": {"once": None, "continuous": {}}}}),
        )  # fmt: skip

        def two_lived() -> bool:
            lives.poll()
            return len(lives.spans()) == 2 and "flip-0" in lives.spans()

        eventually(two_lived, timeout=60, interval=0.1)
        lives.watch(1.0)
    finally:
        lives.close()
    spans = lives.spans()
    run_pod = next(pod for pod in spans if pod != "flip-0")
    gap = spans["flip-0"][0] - spans[run_pod][1]
    _results(
        f"flip (singleton once -> continuous): run's last line -> StatefulSet's worker started "
        f"{gap:.2f}s later; {spans['flip-0'][0] - changed:.2f}s after the edit"
    )
    assert _overlaps(spans) == [], f"two workers of a singleton alive at once: {spans}"


def test_a_singletons_run_now_at_its_schedules_tick_never_overlaps_two_real_workers(
    kubectl: Kubectl, ns: str, real_node: RealNode
) -> None:
    # Runs of 8 s every minute; run-now is asked for within the same instant the
    # CronJob starts its run, before the operator's cache can have seen that Job.
    kubectl.apply(_run_worker(real_node, "tick", {"schedule": {"cron": "* * * * *"}}, 8), ns)
    kubectl.wait("bgj/tick", "condition=Ready", ns, timeout=60)
    lives = Lives(kubectl, ns, "tick", real_node)
    try:
        wait = 60 - time.time() % 60 - 0.3  # until 0.3 s before the next tick
        time.sleep(wait if wait > 0.5 else wait + 60)
        asked = time.time()
        kubectl.run("annotate", "bgj", "tick", "-n", ns, "bgjob.dev/run-now=at-the-tick")
        eventually(
            lambda: (
                (b := kubectl.get("bgj", "tick", ns))
                and b.get("status", {}).get("runNowHandled") == "at-the-tick"
            ),
            timeout=30,
            interval=0.2,
        )
        lives.watch(12.0)  # both runs, had they started, would have overlapped by now
    finally:
        lives.close()
    spans = lives.spans()
    since = datetime.fromtimestamp(int(asked) - 1, UTC)
    jobs = [
        j
        for j in kubectl.json("get", "jobs", "-n", ns)["items"]
        if datetime.fromisoformat(j["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
        >= since  # not a run of an earlier tick
    ]
    kinds = sorted(j["metadata"]["labels"].get("bgjob.dev/run", "") for j in jobs)
    _results(
        f"tick (singleton run-now at the tick, asked {asked % 60:.1f}s into the minute): "
        f"runs {kinds}, workers {len(spans)}"
    )
    assert spans, "no worker ran at all"
    assert _overlaps(spans) == [], f"two workers of a singleton alive at once: {spans}"
    if kinds == ["manual", "scheduled"]:
        # Both ran: one after the other (the schedule held while the manual run ran).
        assert len(spans) == 2
    else:
        assert kinds == ["scheduled"], kinds
        skipped = [e for e in events(kubectl, ns, "tick") if e["reason"] == "RunNowSkipped"]
        assert skipped, "the run-now request was neither run nor skipped"
