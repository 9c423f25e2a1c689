"""RQ benchmark: jobs cut off by scale-in, list-length scaling against work-aware scaling,
and the latency from a scheduled job's due time to a worker running.

    .venv/bin/python -m benchmarks.rq_scaling

Against KUBECONFIG if set, else the local control plane (started and stopped here).
A real redis-server, the operator as its own process with default settings.

1. Interrupted jobs, side by side in one run: two pools of real RQ workers (host
   processes standing for kwok pods, stopped like a kubelet stops a container:
   SIGTERM, SIGKILL after a 1 s grace period) get the same work, N cycles of 4 jobs
   of 3, 5, 7 and 9 s. One BackgroundJob scales on the RQ queue's list length
   (`queue.redis` on rq:queue:Q: what KEDA's redis scaler sees), the other with
   `queue.rq` (in-flight jobs counted, busy workers kept, idle pods removed first).
   Counted: jobs started and never finished.
2. Due -> running: on the real kubelet node, with the rq-worker image, a job
   enqueued in 8-11 s with the pool at zero; the time from its due time to an RQ
   worker registered (running), p50/p95 (negative: running before it was due).

Prints the figures and writes them to benchmarks/results/rq_scaling.json.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import tempfile
import time
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import redis
import rq
import rq.job

from benchmarks.queue_scaling import percentile
from tests.e2e.brokers import RedisServer
from tests.e2e.rq_pool import HostPool, slow
from tests.e2e.support import REPO, Kubectl, Operator, RealNode, bgjob, bin_dir, on_real_node

CYCLES = int(os.environ.get("BENCH_CYCLES", "5"))
DELAY_TRIALS = int(os.environ.get("BENCH_DELAY_TRIALS", "10"))
RESULTS = REPO / "benchmarks" / "results" / "rq_scaling.json"
JOB_SECONDS = (3.0, 5.0, 7.0, 9.0)


def _replicas(k: Kubectl, ns: str, name: str) -> int:
    deployment = k.get("deployment", name, ns)
    return int(deployment["spec"]["replicas"]) if deployment else -1


def interrupted_jobs(k: Kubectl, ns: str, server: RedisServer, log_dir: Path) -> dict[str, Any]:
    broker = redis.Redis.from_url(server.url)
    common = {"concurrency": 4, "shutdown": {"gracePeriodSeconds": 1}}
    # Jobs end 2 s apart, more than the cooldown: the pools scale in step by step while
    # other jobs are still running.
    queue_spec = {"targetPerReplica": 1, "cooldownSeconds": 1}
    pools = {
        "list_length": (
            "bench-list",
            {"redis": {"url": server.url, "list": "rq:queue:bench-list"}},
        ),
        "work_aware": ("bench-rq", {"rq": {"url": server.url, "queues": ["bench-rq"]}}),
    }
    for mode, (_queue, backend) in pools.items():
        name = mode.replace("_", "-")
        k.apply(bgjob(name, {"trigger": {"queue": {**backend, **queue_spec}}, **common}), ns)
    counts: dict[str, dict[str, int]] = {m: {"started": 0, "finished": 0} for m in pools}
    hosts = {
        mode: HostPool(
            k,
            ns,
            f"app.kubernetes.io/instance={mode.replace('_', '-')}",
            server.url,
            [queue],
            grace=1.0,
            log_dir=log_dir,
        )
        for mode, (queue, _) in pools.items()
    }
    for pool in hosts.values():
        pool.__enter__()
    try:
        for cycle in range(CYCLES):
            for queue, _ in pools.values():
                q = rq.Queue(queue, connection=broker)
                for i, seconds in enumerate(JOB_SECONDS):
                    q.enqueue(slow, f"{queue}-journal", f"c{cycle}-j{i}", seconds, job_timeout=60)
            time.sleep(1)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                idle = all(
                    _replicas(k, ns, mode.replace("_", "-")) == 0 and not hosts[mode].workers
                    for mode in pools
                )
                if idle:
                    break
                time.sleep(0.5)
            time.sleep(2)  # a job cut off logs no "finished"; give finished ones time to log
            print(f"  cycle {cycle + 1}/{CYCLES} done", flush=True)
    finally:
        for pool in hosts.values():
            pool.__exit__(None, None, None)
    for mode, (queue, _) in pools.items():
        entries = [e.decode() for e in broker.lrange(f"{queue}-journal", 0, -1)]  # type: ignore[union-attr]
        counts[mode]["started"] = sum(e.startswith("started") for e in entries)
        counts[mode]["finished"] = sum(e.startswith("finished") for e in entries)
    return {
        "cycles": CYCLES,
        "jobs_per_cycle": len(JOB_SECONDS),
        "job_seconds": list(JOB_SECONDS),
        "grace_period_s": 1,
        "cooldown_s": 1,
        **{mode: {**c, "interrupted": c["started"] - c["finished"]} for mode, c in counts.items()},
    }


def due_to_running(k: Kubectl, ns: str, node: RealNode) -> dict[str, Any]:
    server = RedisServer(password=secrets.token_hex(12), also_on=[node.bridge_address])
    server.start()
    try:
        broker = redis.Redis.from_url(server.url, socket_timeout=5)
        url = server.url_at(node.bridge_address)
        k.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "emails-redis"},
                "stringData": {"url": url},
            },
            ns,
        )
        url_from = {"secretKeyRef": {"name": "emails-redis", "key": "url"}}
        image = node.image("rq-worker:1")
        k.apply(
            bgjob(
                "pull",
                {
                    "image": image,
                    "command": ["python3", "-c", "import rq"],
                    "trigger": {"once": {}},
                    "template": {"spec": on_real_node()},
                },
            ),
            ns,
        )
        k.wait("bgj/pull", "condition=Complete", ns, timeout=180)
        k.apply(
            bgjob(
                "emails",
                {
                    "image": image,
                    "command": ["python3", "-m", "rq.cli", "worker", "--with-scheduler", "emails"],
                    "env": [{"name": "RQ_REDIS_URL", "valueFrom": url_from}],
                    "trigger": {
                        "queue": {
                            "rq": {"urlFrom": url_from, "queues": ["emails"]},
                            "cooldownSeconds": 1,
                        }
                    },
                    "shutdown": {"gracePeriodSeconds": 5},
                    "template": {"spec": on_real_node()},
                },
            ),
            ns,
        )
        k.wait("bgj/emails", "condition=Ready", ns)
        queue = rq.Queue("emails", connection=broker)
        lateness: list[float] = []
        job_start: list[float] = []
        for trial in range(DELAY_TRIALS):
            deadline = time.monotonic() + 60
            while broker.scard("rq:workers:emails") or _replicas(k, ns, "emails") != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the pool did not return to zero")
                time.sleep(0.3)
            delay = random.uniform(8, 11)
            job = queue.enqueue_in(timedelta(seconds=delay), "welcome.send_welcome_email", "u", 0.1)
            due = float(broker.zscore("rq:scheduled:emails", job.id))  # type: ignore[arg-type]
            while not broker.scard("rq:workers:emails"):
                if time.time() > due + 60:
                    raise RuntimeError("no worker came")
                time.sleep(0.05)
            lateness.append(time.time() - due)
            while (started := rq.job.Job.fetch(job.id, connection=broker).started_at) is None:
                if time.time() > due + 60:
                    raise RuntimeError("the job did not start")
                time.sleep(0.05)
            job_start.append(started.replace(tzinfo=UTC).timestamp() - due)
            print(
                f"  trial {trial + 1}/{DELAY_TRIALS}: worker {lateness[-1]:+.2f} s,"
                f" job started {job_start[-1]:+.2f} s",
                flush=True,
            )
    finally:
        server.cleanup()
    return {
        "trials": len(lateness),
        "schedule_lead_s": 5,
        "p50_s": round(percentile(lateness, 0.5), 2),
        "p95_s": round(percentile(lateness, 0.95), 2),
        "max_s": round(max(lateness), 2),
        "samples_s": [round(x, 2) for x in lateness],
        "job_started_p50_s": round(percentile(job_start, 0.5), 2),
        "job_started_p95_s": round(percentile(job_start, 0.95), 2),
    }


def main() -> None:
    started_cluster = False
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        subprocess.run([str(REPO / "hack" / "cluster.sh"), "up"], check=True)
        started_cluster = True
        kubeconfig = str(REPO / ".cluster" / "kubeconfig")
    k = Kubectl(kubeconfig, bin_dir())
    server = RedisServer()
    ns = f"bench-{secrets.token_hex(3)}"
    log_dir = Path(tempfile.mkdtemp(prefix="bgjob-bench-rq-"))
    operator = Operator(Path(kubeconfig), log_dir / "operator.log", args=("--log-level=info",))
    try:
        k.run("apply", "--server-side", "-f", str(REPO / "crds" / "bgjob.dev_backgroundjobs.yaml"))
        k.run("wait", "--for=condition=Established", "crd/backgroundjobs.bgjob.dev")
        k.run("create", "namespace", ns)
        server.start()
        operator.start()
        print(f"interrupted jobs, {CYCLES} cycles, list length vs work aware:", flush=True)
        interrupted = interrupted_jobs(k, ns, server, log_dir)
        print(f"due -> worker running on the real node, {DELAY_TRIALS} trials:", flush=True)
        latency = due_to_running(k, ns, RealNode(kubeconfig))
        results = {"interrupted_jobs": interrupted, "due_to_running": latency}
    finally:
        operator.stop()
        server.cleanup()
        k.run("delete", "namespace", ns, "--wait=false", check=False)
        if started_cluster:
            subprocess.run([str(REPO / "hack" / "cluster.sh"), "down"], check=False)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    i, d = results["interrupted_jobs"], results["due_to_running"]
    print(f"jobs cut off by scale-in over {i['cycles']} cycles of {i['jobs_per_cycle']} jobs:")
    for mode in ("list_length", "work_aware"):
        print(f"  {mode}: {i[mode]['interrupted']} of {i[mode]['started']} started")
    print(f"due -> worker running: p50 {d['p50_s']:+.2f} s, p95 {d['p95_s']:+.2f} s")
    print(
        f"due -> job started: p50 {d['job_started_p50_s']:+.2f} s,"
        f" p95 {d['job_started_p95_s']:+.2f} s"
    )
    print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
