"""Queue scaling benchmark: reaction latency, broker load, operator CPU and memory.

    make bench            (or: .venv/bin/python -m benchmarks.queue_scaling)

Against KUBECONFIG if set, else the local control plane (started and stopped
here). A real redis-server on loopback, the operator as its own process with
default settings. Prints the figures and writes them to
benchmarks/results/queue_scaling.json.

1. Reaction: a list goes from empty to 10 messages; the time until the
   worker's Deployment has replicas > 0, seen through a watch. Trials start at
   random offsets from the polling grid.
2. Load: 100 queue BackgroundJobs on 10 lists for 20 s: LLEN calls per second
   at the broker, and the operator's CPU and RSS from /proc.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from kubernetes import client, config, watch

from tests.e2e.brokers import RedisServer
from tests.e2e.support import REPO, Kubectl, Operator, bgjob, bin_dir, eventually

TRIALS = int(os.environ.get("BENCH_TRIALS", "20"))
RESULTS = REPO / "benchmarks" / "results" / "queue_scaling.json"
# KEDA's documented defaults, for the comparison in the README.
KEDA_DEFAULTS = {
    "pollingInterval_s": 30,
    "hpa_sync_period_s": 15,
    "cooldownPeriod_s": 300,
}


class ReplicaWatch:
    """Records when a Deployment's spec.replicas changes, from a watch stream."""

    def __init__(self, namespace: str, name: str) -> None:
        self.namespace, self.name = namespace, name
        self.changes: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        apps = client.AppsV1Api()
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                apps.list_namespaced_deployment,
                self.namespace,
                field_selector=f"metadata.name={self.name}",
                timeout_seconds=5,
            )
            for event in stream:
                replicas = event["object"].spec.replicas
                if not self.changes or self.changes[-1][1] != replicas:
                    self.changes.append((time.monotonic(), replicas))

    def first_after(self, moment: float, predicate: Any) -> float | None:
        for when, replicas in list(self.changes):
            if when >= moment and predicate(replicas):
                return when
        return None

    def current(self) -> int | None:
        return self.changes[-1][1] if self.changes else None

    def stop(self) -> None:
        self._stop.set()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def llen_calls(broker: redis.Redis) -> int:
    stats = broker.info("commandstats").get("cmdstat_llen") or {}
    return int(stats.get("calls", 0))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def reaction(k: Kubectl, ns: str, server: RedisServer) -> dict[str, Any]:
    broker = redis.Redis.from_url(server.url)
    spec = {
        "trigger": {"queue": {"redis": {"url": server.url, "list": "bench"}, "cooldownSeconds": 0}},
        "concurrency": 5,
    }
    k.apply(bgjob("bench", spec), ns)
    k.wait("bgj/bench", "condition=Ready", ns)
    watcher = ReplicaWatch(ns, "bench")
    watcher.start()
    eventually(lambda: watcher.current() == 0, timeout=30)
    latencies: list[float] = []
    for _ in range(TRIALS):
        time.sleep(random.uniform(0.5, 1.5))  # a random phase against the polling grid
        pushed = time.monotonic()
        broker.rpush("bench", *range(10))
        seen = eventually(
            lambda start=pushed: watcher.first_after(start, lambda r: r > 0),
            timeout=30,
            interval=0.01,
        )
        latencies.append(seen - pushed)
        broker.delete("bench")
        eventually(lambda: watcher.current() == 0, timeout=30, interval=0.05)
    watcher.stop()
    return {
        "trials": len(latencies),
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "max_s": round(max(latencies), 3),
        "polling_interval_s": 1,
    }


def load(k: Kubectl, ns: str, server: RedisServer, operator: Operator) -> dict[str, Any]:
    broker = redis.Redis.from_url(server.url)
    manifests = [
        bgjob(
            f"load-{i:03d}",
            {"trigger": {"queue": {"redis": {"url": server.url, "list": f"q{i % 10}"}}}},
        )
        for i in range(100)
    ]
    k.run("apply", "-n", ns, "-f", "-", stdin="\n---\n".join(json.dumps(m) for m in manifests))
    eventually(
        lambda: (
            sum(
                1
                for item in k.json("get", "bgj", "-n", ns)["items"]
                if item["metadata"]["name"].startswith("load-")
                and item.get("status", {}).get("state") == "Idle"
            )
            == 100
        ),
        timeout=180,
        interval=2,
    )
    assert operator.process is not None
    pid = operator.process.pid
    window = 20.0
    calls, cpu, started = llen_calls(broker), cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - started
    return {
        "backgroundjobs": 100,
        "queues": 10,
        "broker_llen_per_s": round((llen_calls(broker) - calls) / elapsed, 2),
        "operator_cpu_percent_of_one_core": round(100 * (cpu_seconds(pid) - cpu) / elapsed, 1),
        "operator_rss_mib": round(rss_mib(pid), 1),
    }


def main() -> None:
    started_cluster = False
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        subprocess.run([str(REPO / "hack" / "cluster.sh"), "up"], check=True)
        started_cluster = True
        kubeconfig = str(REPO / ".cluster" / "kubeconfig")
    k = Kubectl(kubeconfig, bin_dir())
    config.load_kube_config(kubeconfig)
    server = RedisServer()
    ns = f"bench-{secrets.token_hex(3)}"
    log_dir = Path(tempfile.mkdtemp(prefix="bgjob-bench-"))
    operator = Operator(Path(kubeconfig), log_dir / "operator.log", args=("--log-level=info",))
    try:
        k.run("apply", "--server-side", "-f", str(REPO / "crds" / "bgjob.dev_backgroundjobs.yaml"))
        k.run("wait", "--for=condition=Established", "crd/backgroundjobs.bgjob.dev")
        k.run("create", "namespace", ns)
        server.start()
        operator.start()
        results = {
            "reaction": reaction(k, ns, server),
            "load": load(k, ns, server, operator),
            "keda_defaults": KEDA_DEFAULTS,
        }
    finally:
        operator.stop()
        server.cleanup()
        k.run("delete", "namespace", ns, "--wait=false", check=False)
        if started_cluster:
            subprocess.run([str(REPO / "hack" / "cluster.sh"), "down"], check=False)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    r, lo = results["reaction"], results["load"]
    print(f"reaction (backlog -> replicas), {r['trials']} trials at a 1 s polling interval:")
    print(f"  p50 {r['p50_s']:.2f} s   p95 {r['p95_s']:.2f} s   max {r['max_s']:.2f} s")
    print(f"load, {lo['backgroundjobs']} queue BackgroundJobs on {lo['queues']} lists:")
    print(f"  broker LLEN {lo['broker_llen_per_s']}/s")
    print(
        f"  operator CPU {lo['operator_cpu_percent_of_one_core']}% of a core,"
        f" RSS {lo['operator_rss_mib']} MiB"
    )
    print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
