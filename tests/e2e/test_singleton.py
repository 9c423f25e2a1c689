"""A singleton never runs two pods at once: across a trigger change, and when a manual run
meets the schedule. A watch on the namespace's pods records every moment two were alive."""

from __future__ import annotations

import json
import subprocess
import threading
from typing import Any

from tests.e2e.support import Kubectl, bgjob, condition, events, eventually

# Job pods stay Running this long; on delete, every pod takes its whole grace period.
KEEP_RUNNING = "pod-complete.stage.kwok.x-k8s.io/delay"
SLOW_STOP = {"bgjob.dev/e2e-ignore-sigterm": "true"}
GRACE_SECONDS = 3


class PodWatch:
    """``kubectl get pods --watch`` in the background: which pods were alive together.

    A pod is alive from its creation until it has Succeeded or Failed or is gone,
    Terminating included: that is when two instances could both be working.
    """

    def __init__(self, kubectl: Kubectl, namespace: str, instance: str) -> None:
        self.process = subprocess.Popen(
            [
                "kubectl",
                "get",
                "pods",
                "-n",
                namespace,
                "-l",
                f"app.kubernetes.io/instance={instance}",
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=kubectl.env,
        )
        self.alive: dict[str, str] = {}
        self.seen: set[str] = set()
        self.overlaps: list[list[str]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self.process.stdout:
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                continue
            buffer = buffer.lstrip()[end:]
            self._record(event)

    def _record(self, event: dict[str, Any]) -> None:
        pod = event["object"]
        name = pod["metadata"]["name"]
        phase = (pod.get("status") or {}).get("phase")
        with self.lock:
            self.seen.add(name)
            if event["type"] == "DELETED" or phase in ("Succeeded", "Failed"):
                self.alive.pop(name, None)
            else:
                self.alive[name] = phase or "Pending"
            if len(self.alive) > 1:
                self.overlaps.append(sorted(self.alive))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _patch(kubectl: Kubectl, ns: str, name: str, spec: dict[str, Any]) -> None:
    kubectl.run("patch", "bgj", name, "-n", ns, "--type=merge", "-p", json.dumps({"spec": spec}))


def _pods(kubectl: Kubectl, ns: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(
        "get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}"
    )["items"]
    return items


def _running(kubectl: Kubectl, ns: str, name: str) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in _pods(kubectl, ns, name)
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def _singleton(name: str, trigger: dict[str, Any], keep_running: str = "600s") -> dict[str, Any]:
    return bgjob(
        name,
        {
            "trigger": trigger,
            "singleton": True,
            "shutdown": {"gracePeriodSeconds": GRACE_SECONDS},
            "template": {"metadata": {"annotations": {**SLOW_STOP, KEEP_RUNNING: keep_running}}},
        },
    )


def test_singleton_once_to_continuous_never_runs_two_pods(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(_singleton("solo", {"once": {}}), ns)
    run_pods = eventually(lambda: _running(kubectl, ns, "solo"), timeout=60)
    assert len(run_pods) == 1
    watch = PodWatch(kubectl, ns, "solo")
    try:
        _patch(kubectl, ns, "solo", {"trigger": {"once": None, "continuous": {}}})
        eventually(lambda: "solo-0" in _running(kubectl, ns, "solo"), timeout=90)
        kubectl.wait("bgj/solo", "condition=Ready", ns, timeout=60)
    finally:
        watch.stop()
    assert watch.overlaps == [], f"two pods alive at once: {watch.overlaps[:3]}"
    assert run_pods[0] in watch.seen and "solo-0" in watch.seen
    assert kubectl.get("job", "solo", ns) is None
    reasons = [e["reason"] for e in events(kubectl, ns, "solo")]
    assert "Deleted" in reasons and "Created" in reasons


def test_singleton_continuous_to_once_never_runs_two_pods(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(_singleton("flip", {"continuous": {}}, keep_running="2s"), ns)
    kubectl.wait("bgj/flip", "condition=Ready", ns, timeout=60)
    assert _running(kubectl, ns, "flip") == ["flip-0"]
    watch = PodWatch(kubectl, ns, "flip")
    try:
        _patch(kubectl, ns, "flip", {"trigger": {"continuous": None, "once": {}}})
        kubectl.wait("bgj/flip", "condition=Complete", ns, timeout=90)
    finally:
        watch.stop()
    assert watch.overlaps == [], f"two pods alive at once: {watch.overlaps[:3]}"
    assert "flip-0" in watch.seen
    assert any(name.startswith("flip-") and name != "flip-0" for name in watch.seen)
    assert kubectl.get("statefulset", "flip", ns) is None


def _jobs(kubectl: Kubectl, ns: str, run: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(
        "get", "jobs", "-n", ns, "-l", f"bgjob.dev/run={run}"
    )["items"]
    return items


def _active(job: dict[str, Any]) -> bool:
    return not any(
        c["type"] in ("Complete", "Failed") and c["status"] == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def test_a_singleton_schedule_and_run_now_never_overlap(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(_singleton("tick", {"schedule": {"cron": "* * * * *"}}, keep_running="35s"), ns)
    kubectl.wait("bgj/tick", "condition=Ready", ns, timeout=60)
    watch = PodWatch(kubectl, ns, "tick")
    try:
        # A scheduled run is active: run-now is skipped, whatever started the active run.
        scheduled = eventually(
            lambda: [j for j in _jobs(kubectl, ns, "scheduled") if _active(j)],
            timeout=90,
            interval=1,
        )
        kubectl.run("annotate", "bgj", "tick", "-n", ns, "bgjob.dev/run-now=first")
        eventually(
            lambda: any(e["reason"] == "RunNowSkipped" for e in events(kubectl, ns, "tick")),
            timeout=20,
        )
        assert _jobs(kubectl, ns, "manual") == []

        # Once it ended, a manual run starts, and the schedule waits for it to end.
        first = scheduled[0]["metadata"]["name"]
        eventually(
            lambda: (
                not any(
                    _active(j)
                    for j in _jobs(kubectl, ns, "scheduled")
                    if j["metadata"]["name"] == first
                )
            ),
            timeout=60,
            interval=1,
        )
        kubectl.run("annotate", "--overwrite", "bgj", "tick", "-n", ns, "bgjob.dev/run-now=second")
        eventually(lambda: _jobs(kubectl, ns, "manual"), timeout=20)
        cronjob = eventually(
            lambda: (c := kubectl.get("cronjob", "tick", ns)) and c["spec"]["suspend"] and c,
            timeout=20,
        )
        assert cronjob["spec"]["suspend"] is True
        bgj = kubectl.get("bgj", "tick", ns)
        assert bgj["status"]["state"] == "Running"  # type: ignore[index]
        assert condition(bgj, "Ready")["status"] == "True"  # type: ignore[index]
        # The manual run spans the next minute; no scheduled run starts beside it.
        done = eventually(
            lambda: [j for j in _jobs(kubectl, ns, "manual") if not _active(j)],
            timeout=60,
            interval=1,
        )[0]
        started = done["metadata"]["creationTimestamp"]
        ended = done["status"]["completionTime"]
        for job in _jobs(kubectl, ns, "scheduled"):
            created = job["metadata"]["creationTimestamp"]
            assert not started <= created < ended, f"{job['metadata']['name']} ran beside it"
        assert ended[:16] > started[:16], "the manual run did not span a minute boundary"
        # Then the schedule is free again.
        eventually(
            lambda: kubectl.get("cronjob", "tick", ns)["spec"]["suspend"] is False,  # type: ignore[index]
            timeout=20,
        )
    finally:
        watch.stop()
    assert watch.overlaps == [], f"two pods alive at once: {watch.overlaps[:3]}"


def test_pods_refused_by_pod_security_make_the_worker_degraded(kubectl: Kubectl, ns: str) -> None:
    # A privileged container must allow privilege escalation, or the Deployment itself is invalid.
    security = {"privileged": True, "allowPrivilegeEscalation": True}
    privileged = {"containers": [{"name": "worker", "securityContext": security}]}
    kubectl.apply(
        bgjob("rogue", {"trigger": {"continuous": {}}, "template": {"spec": privileged}}), ns
    )
    bgj = eventually(
        lambda: (
            (b := kubectl.get("bgj", "rogue", ns))
            and (condition(b, "Degraded") or {}).get("status") == "True"
            and b
        ),
        timeout=60,
    )
    degraded = condition(bgj, "Degraded")
    assert degraded is not None and degraded["reason"] == "FailedCreate"
    assert "PodSecurity" in degraded["message"] and "privileged" in degraded["message"]
    assert bgj["status"]["state"] == "Degraded"
    assert condition(bgj, "Ready")["status"] == "False"  # type: ignore[index]
    warnings = [
        e
        for e in events(kubectl, ns, "rogue")
        if e["reason"] == "FailedCreate" and e["involvedObject"]["kind"] == "BackgroundJob"
    ]
    assert warnings and warnings[0]["type"] == "Warning"
