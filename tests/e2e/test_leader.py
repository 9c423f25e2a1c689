"""Two operator replicas: exactly one acts, and the other takes over when it goes."""

from __future__ import annotations

import signal
import time

from tests.e2e.support import (
    RELEASE,
    SYSTEM_NAMESPACE,
    Kubectl,
    Operator,
    bgjob,
    eventually,
    metric,
)


def _replica(operator: Operator, ns: str, tag: str) -> Operator:
    return Operator(
        operator.kubeconfig,
        operator.log_path.with_name(f"operator-leader-{tag}.log"),
        args=(
            "--leader-elect",
            f"--leader-election-namespace={SYSTEM_NAMESPACE}",
            f"--leader-election-id={RELEASE}",
            f"--namespace={ns}",
        ),
    )


def _leading(replica: Operator) -> bool:
    return metric(replica.metrics(), "bgjob_leader") == 1


def _reconciles(replica: Operator) -> float:
    return metric(replica.metrics(), "bgjob_reconcile_total", result="success") or 0.0


def test_one_replica_acts_and_a_standby_takes_over(
    kubectl: Kubectl, ns: str, operator: Operator
) -> None:
    first, second = _replica(operator, ns, "a"), _replica(operator, ns, "b")
    first.start()
    try:
        eventually(lambda: _leading(first), timeout=30)
        second.start()
        kubectl.apply(bgjob("ha", {"trigger": {"continuous": {}}}), ns)
        kubectl.wait("bgj/ha", "condition=Ready", ns)
        time.sleep(3)
        assert not _leading(second)
        assert _reconciles(first) > 0
        assert _reconciles(second) == 0, "the standby reconciled"
        # The BackgroundJobs' gauges come from the leader only, so sum() counts once.
        ha = {"namespace": ns, "name": "ha"}
        assert metric(first.metrics(), "bgjob_desired_replicas", **ha) == 1
        assert metric(second.metrics(), "bgjob_desired_replicas", **ha) is None
        assert "bgjob_build_info{" in second.metrics()  # about the process: every replica
        lease = kubectl.get("lease", RELEASE, SYSTEM_NAMESPACE)
        assert lease["spec"]["leaseDurationSeconds"] == 15  # type: ignore[index]

        # The leader dies without a word: the standby waits out the Lease, then acts.
        assert first.process is not None
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        killed = time.monotonic()
        eventually(lambda: _leading(second), timeout=30, interval=0.2)
        takeover = time.monotonic() - killed
        print(f"failover after SIGKILL of the leader: {takeover:.1f} s")
        assert takeover <= 15 + 2 + 3  # lease duration + retry period + slack
        kubectl.run("delete", "deployment", "ha", "-n", ns)
        eventually(lambda: kubectl.get("deployment", "ha", ns) is not None, timeout=20)
        assert _reconciles(second) > 0
        assert metric(second.metrics(), "bgjob_desired_replicas", **ha) == 1

        # A leader stopped with SIGTERM hands over at once by releasing the Lease.
        first.start()
        time.sleep(1)
        stopped = time.monotonic()
        second.stop()
        eventually(lambda: _leading(first), timeout=20, interval=0.2)
        handover = time.monotonic() - stopped
        print(f"failover after SIGTERM of the leader: {handover:.1f} s")
        # The released Lease is taken at the standby's next retry, without waiting out
        # the 15 s lease; the figure includes the old leader's own shutdown.
        assert handover < 15
    finally:
        first.stop()
        second.stop()
        kubectl.run("delete", "lease", RELEASE, "-n", SYSTEM_NAMESPACE, check=False)
