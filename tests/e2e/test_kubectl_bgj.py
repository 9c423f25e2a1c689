"""`kubectl bgj`, found by kubectl's own plugin discovery, against the real control plane.

kubectl looks for an executable `kubectl-bgj` on PATH: the console script the wheel
installs into .venv/bin. Nothing here calls the plugin's Python directly.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.support import REPO, Kubectl, Operator, bgjob, eventually

VENV_BIN = REPO / ".venv" / "bin"
SCHEDULE = {"trigger": {"schedule": {"cron": "0 0 1 1 *"}}}


def bgj(
    kubectl: Kubectl, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl bgj ARGS` with the plugin on PATH, as a user who installed the wheel."""
    base = dict(kubectl.env if env is None else env)
    base["PATH"] = f"{kubectl.bin_dir}:{VENV_BIN}:{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["kubectl", "bgj", *args], capture_output=True, text=True, env=base, timeout=90
    )


def test_kubectl_discovers_the_plugin(kubectl: Kubectl) -> None:
    env = {**kubectl.env, "PATH": f"{kubectl.bin_dir}:{VENV_BIN}:/usr/bin:/bin"}
    listed = subprocess.run(
        ["kubectl", "plugin", "list"], capture_output=True, text=True, env=env, timeout=30
    )
    assert str(VENV_BIN / "kubectl-bgj") in listed.stdout, listed.stdout + listed.stderr
    helped = bgj(kubectl, "--help")
    assert helped.returncode == 0 and "run-now" in helped.stdout


def test_run_now_starts_a_run_of_a_schedule(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(bgjob("report", SCHEDULE), ns)
    kubectl.wait("bgj/report", "condition=Ready", ns)
    done = bgj(kubectl, "run-now", "report", "-n", ns)
    assert done.returncode == 0, done.stderr
    assert "backgroundjobs.bgjob.dev/report run requested (bgjob.dev/run-now=" in done.stdout
    started = [line for line in done.stdout.splitlines() if line.startswith("started run ")]
    assert started, done.stdout
    run = started[0].removeprefix("started run ")
    job = kubectl.get("job", run, ns)
    assert job is not None
    assert job["metadata"]["labels"]["bgjob.dev/run"] == "manual"
    assert job["metadata"]["ownerReferences"][0]["name"] == "report"
    # A continuous BackgroundJob has no runs: the plugin says so and changes nothing.
    kubectl.apply(bgjob("api", {"trigger": {"continuous": {}}}), ns)
    refused = bgj(kubectl, "run-now", "api", "-n", ns)
    assert refused.returncode == 1
    assert "run-now applies to schedule and once BackgroundJobs; api is continuous" in (
        refused.stderr
    )
    assert "bgjob.dev/run-now" not in (kubectl.get("bgj", "api", ns) or {})["metadata"].get(
        "annotations", {}
    )


def test_suspend_and_resume_flip_spec_suspend(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(bgjob("nightly", SCHEDULE), ns)
    kubectl.wait("bgj/nightly", "condition=Ready", ns)
    done = bgj(kubectl, "suspend", "nightly", "-n", ns)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "backgroundjobs.bgjob.dev/nightly suspended"
    assert kubectl.get("bgj", "nightly", ns)["spec"]["suspend"] is True  # type: ignore[index]
    eventually(lambda: kubectl.get("bgj", "nightly", ns)["status"]["state"] == "Suspended")  # type: ignore[index]
    eventually(lambda: kubectl.get("cronjob", "nightly", ns)["spec"]["suspend"] is True)  # type: ignore[index]
    again = bgj(kubectl, "suspend", "nightly", "-n", ns)
    assert again.stdout.strip() == "backgroundjobs.bgjob.dev/nightly already suspended"
    done = bgj(kubectl, "resume", "nightly", "-n", ns)
    assert done.stdout.strip() == "backgroundjobs.bgjob.dev/nightly resumed", done.stderr
    assert kubectl.get("bgj", "nightly", ns)["spec"]["suspend"] is False  # type: ignore[index]
    eventually(lambda: kubectl.get("bgj", "nightly", ns)["status"]["state"] == "Scheduled")  # type: ignore[index]


def test_why_names_the_degraded_reason(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(
        bgjob(
            "martian", {"trigger": {"schedule": {"cron": "0 3 * * *", "timeZone": "Mars/Olympus"}}}
        ),
        ns,
    )
    kubectl.wait("bgj/martian", "condition=Degraded", ns)
    # The user's kubeconfig and context by flag, namespace by flag, no KUBECONFIG.
    context = kubectl.run("config", "current-context").stdout.strip()
    env = {k: v for k, v in kubectl.env.items() if k != "KUBECONFIG"}
    env["HOME"] = str(Path(kubectl.kubeconfig).parent)  # no ~/.kube/config to fall back on

    def why() -> subprocess.CompletedProcess[str]:
        return bgj(
            kubectl,
            "why",
            "martian",
            f"--kubeconfig={kubectl.kubeconfig}",
            f"--context={context}",
            "-n",
            ns,
            env=env,
        )

    def why_with_event() -> subprocess.CompletedProcess[str] | None:
        done = why()
        return done if "InvalidTimeZone" in done.stdout.split("Events")[-1] else None

    done = eventually(why_with_event)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("martian is not Ready: InvalidTimeZone: ")
    assert "spec.trigger.schedule.timeZone" in first
    assert "State: Degraded   Trigger: schedule" in done.stdout
    assert any(line.split()[:2] == ["Stalled", "True"] for line in done.stdout.splitlines()[3:]), (
        done.stdout
    )
    events = done.stdout.split("Events:")[1]
    assert "Warning" in events and "backgroundjob/martian" in events
    missing = bgj(kubectl, "why", "nobody", "-n", ns)
    assert missing.returncode == 1
    assert (
        missing.stderr.strip()
        == f'error: backgroundjobs.bgjob.dev "nobody" not found in namespace "{ns}"'
    )


def test_why_and_logs_of_a_failed_run(kubectl: Kubectl, ns: str) -> None:
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

    def why_with_job_event() -> subprocess.CompletedProcess[str] | None:
        done = bgj(kubectl, "why", "doomed", "-n", ns)
        return done if "job/doomed" in done.stdout else None

    done = eventually(why_with_job_event, timeout=30)
    lines = done.stdout.splitlines()
    assert lines[0] == "doomed is not Ready: RunFailed: run doomed failed: BackoffLimitExceeded"
    assert "Last run: doomed Failed: BackoffLimitExceeded: " in done.stdout
    events = done.stdout.split("Events:")[1]
    assert any(
        "job/doomed" in line and "BackoffLimitExceeded" in line for line in events.splitlines()
    )
    # The last run's pod is found by the operator's labels; kwok keeps no logs for it.
    logs = bgj(kubectl, "logs", "doomed", "-n", ns)
    assert logs.returncode == 1
    assert "(run doomed, phase Failed): " in logs.stderr, logs.stderr


def test_why_shows_the_workloads_own_conditions(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(bgjob("api", {"trigger": {"continuous": {}}, "concurrency": 2}), ns)
    kubectl.wait("bgj/api", "condition=Ready", ns)
    done = bgj(kubectl, "why", "api", "-n", ns)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "api is Ready: 2 of 2 pods ready"
    assert "Workload: Deployment api" in done.stdout
    assert "Available" in done.stdout and "MinimumReplicasAvailable" in done.stdout


def test_logs_says_clearly_when_a_pod_has_no_logs(kubectl: Kubectl, ns: str) -> None:
    # kwok runs no containers, so the API server has no logs to give for its pods.
    kubectl.apply(bgjob("api", {"trigger": {"continuous": {}}}), ns)
    kubectl.wait("bgj/api", "condition=Ready", ns)
    pods = kubectl.json("get", "pods", "-n", ns, "-l", "app.kubernetes.io/instance=api")["items"]
    assert len(pods) == 1
    pod = pods[0]["metadata"]["name"]
    done = bgj(kubectl, "logs", "api", "-n", ns)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: no logs from pod {pod} (the workers, phase Running): ")
    # A schedule BackgroundJob that never ran has no last run to show.
    kubectl.apply(bgjob("report", SCHEDULE), ns)
    kubectl.wait("bgj/report", "condition=Ready", ns)
    none = bgj(kubectl, "logs", "report", "-n", ns)
    assert none.returncode == 1
    assert none.stderr.strip() == "error: report has no finished run yet"


def test_render_needs_no_cluster(kubectl: Kubectl, tmp_path: Path) -> None:
    path = tmp_path / "bgj.yaml"
    path.write_text(json.dumps(bgjob("nightly", SCHEDULE)))
    env = {k: v for k, v in kubectl.env.items() if k != "KUBECONFIG"}
    done = bgj(kubectl, "render", "-f", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert "kind: CronJob" in done.stdout and "name: nightly" in done.stdout


# --- --log-format, on a real operator process -----------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_the_operator_writes_one_parsable_line_per_event(
    kubectl: Kubectl, ns: str, tmp_path: Path, fmt: str
) -> None:
    """A second operator, limited to an empty namespace so it acts on nothing the session's
    operator owns, at debug level (kopf's own records included)."""
    from tests.unit.logfmt_parser import parse_logfmt

    log_path = tmp_path / f"operator-{fmt}.log"
    operator = Operator(
        Path(kubectl.kubeconfig),
        log_path,
        args=("--log-level=debug", f"--log-format={fmt}", "-n", ns),
    )
    operator.start()
    operator.stop()
    lines = log_path.read_text().splitlines()
    assert len(lines) >= 3, lines
    parse = json.loads if fmt == "json" else parse_logfmt
    records = [parse(line) for line in lines]
    assert all({"time", "level", "logger", "msg"} <= set(r) for r in records)
    # Ours and the libraries' (kopf's are quiet below WARNING; tests/unit/test_logs.py
    # routes them through the same formatter).
    assert {r["logger"].split(".")[0] for r in records} >= {"bgjob", "urllib3"}
    starting = next(r for r in records if r["msg"] == "starting")
    assert starting["namespaces"] == ns
