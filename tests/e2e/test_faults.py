"""Faults on the real control plane, asserted as a user would see them.

These restart parts of the local control plane (hack/cluster.py), so they need
it: with a KUBECONFIG pointing elsewhere they fail rather than pretend.
`make chaos` runs this file alone; each test prints its figures.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import signal
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.e2e.support import (
    RELEASE,
    REPO,
    SYSTEM_NAMESPACE,
    Kubectl,
    Operator,
    bgjob,
    condition,
    eventually,
    metric,
)

SERVICE_ACCOUNT_USER = f"system:serviceaccount:{SYSTEM_NAMESPACE}:bgjob-operator"


def _cluster() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bgjob_cluster", REPO / "hack" / "cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cluster() -> ModuleType:
    module = _cluster()
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if Path(kubeconfig).resolve() != module.KUBECONFIG.resolve() or not module.alive("etcd"):
        pytest.fail("fault tests restart the local control plane: run them via hack/test.sh")
    return module


def _etcd(cluster: ModuleType, call: str, body: dict[str, Any]) -> dict[str, Any]:
    state = json.loads(cluster.STATE_FILE.read_text())
    request = cluster.urllib.request.Request(
        f"{state['etcd']}/v3/{call}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with cluster.LOCAL.open(request, timeout=10) as response:
        answer: dict[str, Any] = json.load(response)
        return answer


def compact_etcd(cluster: ModuleType) -> int:
    """Compact etcd to its current revision: every older resourceVersion is gone."""
    key = base64.b64encode(b"/registry/compaction-probe").decode()
    revision = int(_etcd(cluster, "kv/range", {"key": key})["header"]["revision"])
    _etcd(cluster, "kv/compaction", {"revision": revision, "physical": True})
    return revision


def probe(operator: Operator) -> dict[str, int]:
    """The operator's cache figures from its health endpoint."""
    import urllib.request

    url = f"http://127.0.0.1:{operator.health_port}/healthz"
    with urllib.request.urlopen(url, timeout=5) as response:
        found: dict[str, int] = json.load(response)["cache"]
        return found


def ready(obj: dict[str, Any] | None) -> bool:
    return (condition(obj, "Ready") or {}).get("status") == "True"


def items(kubectl: Kubectl, kind: str, ns: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = kubectl.json("get", kind, "-n", ns)["items"]
    return found


def controller_uid(obj: dict[str, Any]) -> list[str]:
    return [r["uid"] for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")]


def restarts(operator: Operator, reason: str) -> float:
    text = operator.metrics()
    return sum(
        metric(text, "bgjob_watch_restarts_total", kind=kind, reason=reason) or 0.0
        for kind in ("BackgroundJob", "Deployment", "StatefulSet", "CronJob", "Job")
    )


def test_a_watch_lost_to_compaction_restores_a_deleted_child_and_forgets_a_deleted_bgjob(
    kubectl: Kubectl, ns: str, operator: Operator, cluster: ModuleType
) -> None:
    # An operator whose watches the server ends every few seconds, so they end
    # cleanly while it is paused and it comes back to resume them from its version.
    operator.stop()
    short = Operator(
        operator.kubeconfig,
        operator.log_path.with_name("operator-faults-expiry.log"),
        args=("--watch-timeout-seconds=5",),
    )
    short.start()
    try:
        _watch_expiry(kubectl, ns, short, cluster)
    finally:
        if short.process is not None and short.process.poll() is None:
            short.process.send_signal(signal.SIGCONT)
        short.stop()
        operator.start()


def _watch_expiry(kubectl: Kubectl, ns: str, operator: Operator, cluster: ModuleType) -> None:
    kubectl.apply(bgjob("keeper", {"trigger": {"continuous": {}}}), ns)
    kubectl.apply(bgjob("ghost", {"trigger": {"continuous": {}}}), ns)
    kubectl.wait("bgj/keeper", "condition=Ready", ns)
    kubectl.wait("bgj/ghost", "condition=Ready", ns)
    first_uid = kubectl.get("deployment", "keeper", ns)["metadata"]["uid"]  # type: ignore[index]
    lists_before = probe(operator)["lists"]
    expired_before = restarts(operator, "expired")
    assert operator.process is not None
    pid = operator.process.pid

    # The operator stops reading (a long pause, a partition) while its watches end;
    # the API server restarts (a fresh watch cache), things change, etcd forgets the
    # history: when the operator resumes its watches, their resourceVersion is gone
    # (410 Gone) and only a LIST can tell it what happened meanwhile.
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(6)  # every watch has ended on the server's side
        down = cluster.restart("kube-apiserver")
        kubectl.run("delete", "deployment", "keeper", "-n", ns)
        kubectl.run("delete", "bgj", "ghost", "-n", ns)
        eventually(lambda: kubectl.get("deployment", "ghost", ns) is None, timeout=60)
        revision = compact_etcd(cluster)
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    # kwok 0.8 (the fake kubelet) stops making new pods Ready after a compaction;
    # a node agent restart puts it back, so the next tests get Ready pods again.
    cluster.restart("kwok")

    restored = eventually(
        lambda: (
            (d := kubectl.get("deployment", "keeper", ns)) and d["metadata"]["uid"] != first_uid
        ),
        timeout=60,
    )
    healed = time.monotonic() - resumed
    assert restored
    kubectl.wait("bgj/keeper", "condition=Ready", ns)
    eventually(lambda: restarts(operator, "expired") > expired_before, timeout=30)
    # The ghost is gone from the cache: nothing brings its Deployment back.
    time.sleep(3)
    assert kubectl.get("deployment", "ghost", ns) is None, "the ghost re-created its child"
    total = len(kubectl.json("get", "bgj", "-A")["items"])
    assert probe(operator)["backgroundjobs"] == total
    print(
        f"watch expiry: apiserver down {down:.1f} s, etcd compacted at revision {revision}, "
        f"child restored {healed:.1f} s after resume, relists "
        f"{probe(operator)['lists'] - lists_before}, "
        f"expired={restarts(operator, 'expired') - expired_before:.0f} "
        f"error={restarts(operator, 'error'):.0f}, ghost gone"
    )


def _bgjobs(names: list[str]) -> str:
    docs = []
    for i, name in enumerate(names):
        trigger = {"continuous": {}} if i % 2 == 0 else {"schedule": {"cron": "0 3 * * *"}}
        docs.append(bgjob(name, {"trigger": trigger}))
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


def test_kill_9_while_200_backgroundjobs_are_created_leaves_exactly_their_children(
    kubectl: Kubectl, ns: str, operator: Operator
) -> None:
    names = [f"w{i:03d}" for i in range(200)]
    batches = [names[i : i + 20] for i in range(0, len(names), 20)]
    created: list[str] = []

    def create() -> None:
        for batch in batches:
            kubectl.run("apply", "-n", ns, "-f", "-", stdin=_bgjobs(batch))
            created.extend(batch)

    creator = threading.Thread(target=create)
    creator.start()
    eventually(lambda: len(created) >= 60, timeout=120, interval=0.1)
    eventually(lambda: len(items(kubectl, "deployments", ns)) >= 10, timeout=60, interval=0.2)
    assert operator.process is not None
    operator.process.send_signal(signal.SIGKILL)
    operator.process.wait()
    at_kill = len(created), len(items(kubectl, "deployments", ns))
    time.sleep(2)  # the creates go on while it is down
    operator.start()
    started = time.monotonic()
    creator.join()

    def all_ready() -> int:
        listed = kubectl.json("get", "bgj", "-n", ns)["items"]
        count = sum(1 for b in listed if ready(b))
        return count if count == len(names) else 0

    eventually(all_ready, timeout=300, interval=2)
    converged = time.monotonic() - started
    bgjs = {b["metadata"]["name"]: b["metadata"]["uid"] for b in items(kubectl, "bgj", ns)}
    deployments = items(kubectl, "deployments", ns)
    cronjobs = items(kubectl, "cronjobs", ns)
    continuous = {n for i, n in enumerate(names) if i % 2 == 0}
    scheduled = set(names) - continuous
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(continuous)
    assert sorted(c["metadata"]["name"] for c in cronjobs) == sorted(scheduled)
    for child in deployments + cronjobs:
        assert controller_uid(child) == [bgjs[child["metadata"]["name"]]], child["metadata"]
    assert items(kubectl, "statefulsets", ns) == []
    assert items(kubectl, "jobs", ns) == []
    replicasets = Counter(
        r["metadata"]["ownerReferences"][0]["name"] for r in items(kubectl, "replicasets", ns)
    )
    assert set(replicasets.values()) == {1}, "a Deployment was rolled twice"
    pods = items(kubectl, "pods", ns)
    assert len(pods) == len(continuous), "duplicate or missing pods"
    print(
        f"kill -9 after {at_kill[0]} BackgroundJobs and {at_kill[1]} Deployments: "
        f"200 Ready {converged:.1f} s after the restart; deployments {len(deployments)}, "
        f"cronjobs {len(cronjobs)}, pods {len(pods)}, duplicates 0, orphans 0"
    )


def test_api_server_and_etcd_restarts_heal_without_an_operator_restart(
    kubectl: Kubectl, ns: str, operator: Operator, cluster: ModuleType
) -> None:
    for name in ("alpha", "beta", "gamma"):
        kubectl.apply(bgjob(name, {"trigger": {"continuous": {}}, "concurrency": 2}), ns)
    for name in ("alpha", "beta", "gamma"):
        kubectl.wait(f"bgj/{name}", "condition=Ready", ns)
    assert operator.process is not None
    pid = operator.process.pid
    figures = []
    for component, drift in (("kube-apiserver", "alpha"), ("etcd", "beta")):
        uid = kubectl.get("deployment", drift, ns)["metadata"]["uid"]  # type: ignore[index]
        down = cluster.restart(component, pause=8)
        if component == "etcd":  # the API server notices etcd is back on its own
            eventually(lambda: kubectl.run("get", "ns", ns, check=False).returncode == 0)
        # Drift while the operator's watches are still backing off after the outage.
        back = time.monotonic()
        kubectl.run("delete", "deployment", drift, "-n", ns)
        kubectl.run("scale", "deployment", "gamma", "-n", ns, "--replicas=5")
        kubectl.apply(bgjob(f"new-{drift}", {"trigger": {"continuous": {}}}), ns)
        eventually(
            lambda d=drift, u=uid: (
                (obj := kubectl.get("deployment", d, ns)) and obj["metadata"]["uid"] != u
            ),
            timeout=90,
        )
        eventually(
            lambda: kubectl.get("deployment", "gamma", ns)["spec"]["replicas"] == 2,  # type: ignore[index]
            timeout=90,
        )
        kubectl.wait(f"bgj/new-{drift}", "condition=Ready", ns, timeout=90)
        figures.append(f"{component} down {down:.1f} s, healed {time.monotonic() - back:.1f} s")
    kubectl.wait(f"bgj/{'alpha'}", "condition=Ready", ns)
    assert operator.process.pid == pid and operator.process.poll() is None, "it restarted"
    print("restarts: " + "; ".join(figures) + f"; operator pid unchanged ({pid})")


AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "users": [SERVICE_ACCOUNT_USER],
            "verbs": ["create", "update", "patch", "delete"],
        },
        {"level": "None"},
    ],
}


def audited_api_server(cluster: ModuleType) -> Path:
    """Restart the API server with an audit log of the operator's writes (once)."""
    log = cluster.STATE_DIR / "logs" / "audit.log"
    policy = cluster.STATE_DIR / "audit-policy.json"
    policy.write_text(json.dumps(AUDIT_POLICY))
    pid, _ = cluster.recorded("kube-apiserver")
    if b"--audit-log-path" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        cluster.restart(
            "kube-apiserver",
            (f"--audit-policy-file={policy}", f"--audit-log-path={log}", "--audit-log-maxage=1"),
        )
    return log


def audit_writes(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("stage") == "ResponseComplete":
            out.append(entry)
    return out


def when(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _replica(operator: Operator, ns: str, tag: str, lease: str) -> Operator:
    return Operator(
        operator.kubeconfig,
        operator.log_path.with_name(f"operator-faults-{tag}.log"),
        args=(
            "--leader-elect",
            f"--leader-election-namespace={SYSTEM_NAMESPACE}",
            f"--leader-election-id={lease}",
            f"--namespace={ns}",
            "--workers=2",
            "--log-level=debug",
        ),
    )


def _leading(replica: Operator) -> bool:
    try:
        return metric(replica.metrics(), "bgjob_leader") == 1
    except OSError:
        return False


@pytest.mark.parametrize("fault", ["kill", "pause"])
def test_an_old_leader_writes_nothing_after_its_renew_deadline(
    kubectl: Kubectl, ns: str, operator: Operator, cluster: ModuleType, fault: str
) -> None:
    audit = audited_api_server(cluster)
    lease = RELEASE  # the chart grants the Lease by this name only
    first, second = (
        _replica(operator, ns, f"{ns}-a", lease),
        _replica(operator, ns, f"{ns}-b", lease),
    )
    operator.stop()  # only the two replicas act on the namespace
    first.start()
    try:
        eventually(lambda: _leading(first), timeout=30)
        second.start()
        holder = kubectl.get("lease", lease, SYSTEM_NAMESPACE)["spec"]["holderIdentity"]  # type: ignore[index]
        names = [f"b{i:02d}" for i in range(60)]
        kubectl.run("apply", "-n", ns, "-f", "-", stdin=_bgjobs(names))
        eventually(lambda: len(items(kubectl, "deployments", ns)) >= 5, timeout=60, interval=0.1)
        assert first.process is not None
        faulted = time.time()
        if fault == "kill":
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()
        else:  # frozen for longer than the Lease, then it wakes up mid-reconcile
            first.process.send_signal(signal.SIGSTOP)
        eventually(lambda: _leading(second), timeout=40, interval=0.2)
        failover = time.time() - faulted
        if fault == "pause":
            time.sleep(3)
            first.process.send_signal(signal.SIGCONT)
            first.process.wait(timeout=30)  # it notices the lost Lease and exits
        eventually(
            lambda: sum(1 for b in items(kubectl, "bgj", ns) if ready(b)) == len(names),
            timeout=180,
            interval=2,
        )
        time.sleep(2)  # the audit log is written asynchronously
        writes = [
            w
            for w in audit_writes(audit)
            if (w.get("objectRef") or {}).get("namespace") in (ns, SYSTEM_NAMESPACE)
        ]
        old = [w for w in writes if holder in w.get("userAgent", "")]
        renewals = [
            when(w["requestReceivedTimestamp"])
            for w in old
            if (w.get("objectRef") or {}).get("resource") == "leases"
            and (w.get("responseStatus") or {}).get("code", 500) < 300
        ]
        assert renewals, "the old leader's Lease renewals are not in the audit log"
        deadline = max(renewals) + 10.0  # the renew deadline
        other = [
            w
            for w in old
            if (w.get("objectRef") or {}).get("resource") != "leases"
            and (w.get("objectRef") or {}).get("namespace") == ns
        ]
        late = [w for w in other if when(w["requestReceivedTimestamp"]) > deadline]
        assert other, "the old leader wrote nothing before the fault: no burst was caught"
        assert late == [], [
            (w["verb"], w["objectRef"], w["requestReceivedTimestamp"]) for w in late
        ]
        deployments = items(kubectl, "deployments", ns)
        continuous = [n for i, n in enumerate(names) if i % 2 == 0]
        assert sorted(d["metadata"]["name"] for d in deployments) == continuous
        print(
            f"leader {fault}: failover {failover:.1f} s; old leader wrote {len(other)} times, "
            f"last {max(when(w['requestReceivedTimestamp']) for w in other) - faulted:+.1f} s "
            f"from the fault, 0 after its deadline; {len(deployments)} Deployments, no duplicates"
        )
    finally:
        for replica in (first, second):
            if replica.process is not None and replica.process.poll() is None:
                replica.process.send_signal(signal.SIGCONT)
            replica.stop()
        kubectl.run("delete", "lease", lease, "-n", SYSTEM_NAMESPACE, check=False)
        operator.start()
