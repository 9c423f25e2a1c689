"""Scale benchmark: N BackgroundJobs on one operator process.

    make bench-scale                        (N = 10000)
    .venv/bin/python -m benchmarks.scale --n 1000
    .venv/bin/python -m benchmarks.scale --sizes 1000,3000,10000   (then the plot)
    .venv/bin/python -m benchmarks.scale --plot-only

Against KUBECONFIG if set, else the local control plane (started here and left
up, as `make run` leaves it; `make cluster-down` stops it). The operator runs as
its own process with default settings and leader election on. Each size gets
its own namespace, deleted at the end.

The N BackgroundJobs mix the triggers: 80 % ``schedule`` (a CronJob, no pods),
19 % suspended ``queue`` (a Deployment at 0 replicas) and 1 % ``continuous`` at
one replica (pods kwok can carry). Figures:

- create -> child: from the create request of a BackgroundJob to its child's
  ADDED event on a watch; side by side, every 10th schedule BackgroundJob is
  accompanied by a direct create of the same CronJob (rendered by the operator's
  own code, another name, no owner): its create -> ADDED on the same watch.
- lag: from the last create's answer until every BackgroundJob has a status
  with ``observedGeneration`` (seen on a watch).
- steady: RSS; then 30 s idle: CPU and writes to objects (from /healthz).
- SIGTERM -> exit, and whether the Lease was released (holder empty).
- cold start: a new operator process with N present: seconds until the cache
  holds everything (/healthz ``synced``) and until the first pass over all of
  them is done (every key reconciled once, nothing queued), the writes it sent
  meanwhile (must be 0), its RSS after; then SIGTERM -> exit again.

Results go to benchmarks/results/scale.json (one entry per N, kept across runs)
and the plot to docs/scale.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bgjob.cli import render
from bgjob.kube import ApiError, Kube, load_config
from tests.e2e.support import REPO, Kubectl, Operator, bgjob, bin_dir, eventually

RESULTS = REPO / "benchmarks" / "results" / "scale.json"
PLOT = REPO / "docs" / "scale.png"
DIRECT_EVERY = 10  # one direct CronJob per this many schedule BackgroundJobs
IDLE_SECONDS = 30.0
LEASE = "bgjob-operator-bench"


# --- what is created ----------------------------------------------------------------


def manifest(i: int) -> dict[str, Any]:
    """The i-th BackgroundJob: 1 % continuous, 19 % suspended queue, 80 % schedule."""
    name = f"bg-{i:05d}"
    if i % 100 == 0:
        return bgjob(name, {"trigger": {"continuous": {}}})
    if i % 100 < 20:
        queue = {"redis": {"url": "redis://127.0.0.1:1/0", "list": f"q{i % 7}"}}
        return bgjob(name, {"trigger": {"queue": queue}, "suspend": True})
    return bgjob(name, {"trigger": {"schedule": {"cron": f"{i % 60} 3 * * *"}}})


def _unlabel(value: Any) -> Any:
    """Without the managed-by label: the operator does not watch a direct create."""
    if isinstance(value, dict):
        return {k: _unlabel(v) for k, v in value.items() if k != "app.kubernetes.io/managed-by"}
    if isinstance(value, list):
        return [_unlabel(v) for v in value]
    return value


def direct_child(bgj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The CronJob the operator makes of ``bgj``, under another name and without owner."""
    body = {**bgj, "metadata": {**bgj["metadata"], "namespace": namespace}}
    (child,) = render([body])
    child = _unlabel(child)
    child["metadata"]["name"] = "direct-" + bgj["metadata"]["name"]
    return dict(child)


# --- measuring ----------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Seen:
    """First ADDED time of every object of some kinds in one namespace, from watches;
    for BackgroundJobs, the first time a status with observedGeneration shows."""

    def __init__(self, kube: Kube, namespace: str, kinds: tuple[str, ...]) -> None:
        self.kube, self.namespace = kube, namespace
        self.added: dict[str, float] = {}
        self.reconciled: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(kind,), daemon=True) for kind in kinds
        ]
        self._streams: list[Any] = []
        # While ``recording``: BackgroundJob status changes (name, fields that changed).
        self.recording = False
        self.changes: list[tuple[str, list[str]]] = []
        self._status: dict[str, dict[str, Any]] = {}

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _run(self, kind: str) -> None:
        version = str(
            self.kube.list_page(kind, self.namespace, limit=1)["metadata"]["resourceVersion"]
        )
        while not self._stop.is_set():
            stream = self.kube.watch(
                kind, self.namespace, resource_version=version, timeout_seconds=60
            )
            self._streams.append(stream)
            try:
                for event in stream:
                    now = time.time()
                    obj = event.get("object") or {}
                    meta = obj.get("metadata") or {}
                    version = str(meta.get("resourceVersion") or version)
                    if event.get("type") == "ERROR":
                        raise RuntimeError(f"watch {kind} failed: {obj}")
                    name = meta.get("name")
                    if not name or event.get("type") == "BOOKMARK":
                        continue
                    if kind == "BackgroundJob":
                        status = obj.get("status") or {}
                        if status.get("observedGeneration") is not None:
                            self.reconciled.setdefault(name, now)
                        before = self._status.get(name)
                        self._status[name] = status
                        if self.recording and before is not None and before != status:
                            fields = sorted(
                                k
                                for k in set(before) | set(status)
                                if before.get(k) != status.get(k)
                            )
                            self.changes.append((name, fields))
                    else:
                        self.added.setdefault(name, now)
            except Exception:
                if self._stop.is_set():
                    return
                raise

    def stop(self) -> None:
        self._stop.set()
        for stream in self._streams:
            stream.close()


def writes(operator: Operator) -> float:
    """Writes to objects the operator sent so far (the Lease's PUTs are not counted)."""
    text = operator.metrics()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("rest_client_requests_total{")
        and any(f'method="{m}"' in line for m in ("POST", "PATCH", "DELETE"))
    )


def requests(operator: Operator) -> dict[str, float]:
    """Requests the operator sent so far, by "METHOD resource" (the Lease's excluded)."""
    out: dict[str, float] = {}
    for line in operator.metrics().splitlines():
        if not line.startswith("rest_client_requests_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if labels.get("resource") == "leases":
            continue
        key = f"{labels.get('method')} {labels.get('resource')}"
        out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def queue_seconds(operator: Operator) -> dict[str, float]:
    """Sums and counts of the work queue's wait and work histograms (seconds)."""
    out: dict[str, float] = {}
    for line in operator.metrics().splitlines():
        for metric in ("workqueue_queue_duration_seconds", "workqueue_work_duration_seconds"):
            for part in ("sum", "count"):
                if line.startswith(f"{metric}_{part}{{"):
                    out[f"{metric}_{part}"] = float(line.rsplit(" ", 1)[1])
    return out


def stages(
    log: Path,
    sent: dict[str, float],
    added: dict[str, float],
    reconciled: dict[str, float],
    queue: dict[str, float],
) -> dict[str, Any]:
    """Where a create's time goes: from the create request to the child write done (the
    operator's log line, wall clock), to the child seen on a watch, to the status seen;
    and the work queue's mean wait and mean work per reconcile."""
    written: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if "msg=created kind=" in line:
            fields = dict(re.findall(r"(\w+)=(\S+)", line))
            when = datetime.strptime(fields["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
            written.setdefault(fields["name"], when.replace(tzinfo=UTC).timestamp())
    out: dict[str, Any] = {}
    for label, ends in (
        ("child_written", written),
        ("child_seen", added),
        ("status_seen", reconciled),
    ):
        spans = [ends[name] - at for name, at in sent.items() if name in ends]
        if spans:
            out[f"{label}_ms"] = {
                f"p{p}": round(1000 * percentile(spans, p / 100), 1) for p in (50, 99)
            }
    for stage, metric in (("queue_wait", "queue"), ("reconcile", "work")):
        total = queue.get(f"workqueue_{metric}_duration_seconds_sum", 0.0)
        count = queue.get(f"workqueue_{metric}_duration_seconds_count", 0.0)
        out[f"{stage}_mean_ms"] = round(1000 * total / count, 1) if count else None
    count = queue.get("workqueue_work_duration_seconds_count", 0.0)
    out["reconciles_per_create"] = round(count / max(len(sent), 1), 2)
    return out


def per(after: dict[str, float], before: dict[str, float], n: float) -> dict[str, float]:
    """The requests sent between two snapshots, per unit of ``n`` (rounded)."""
    return {
        key: round((value - before.get(key, 0.0)) / n, 3)
        for key, value in sorted(after.items())
        if value - before.get(key, 0.0) > 0
    }


def logged(log: Path, message: str) -> tuple[float, dict[str, str]] | None:
    """The time and fields of the first log line with this message (logfmt)."""
    for line in log.read_text(errors="replace").splitlines():
        if f'msg="{message}"' in line or f"msg={message} " in line:
            fields = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
            when = datetime.strptime(fields["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
            return when.replace(tzinfo=UTC).timestamp(), fields
    return None


def lease_holder(kube: Kube, namespace: str) -> str | None:
    lease = kube.get("Lease", namespace, LEASE)
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or None


def stop(operator: Operator, kube: Kube, namespace: str) -> dict[str, Any]:
    """SIGTERM: seconds until the process is gone; the Lease's holder afterwards."""
    assert operator.process is not None
    sent = time.monotonic()
    operator.process.terminate()
    try:
        operator.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        operator.process.kill()
        operator.process.wait()
    exited = time.monotonic() - sent
    holder = lease_holder(kube, namespace)
    return {
        "sigterm_to_exit_s": round(exited, 2),
        "exit_code": operator.process.returncode,
        "lease_released": holder is None,
    }


def churn(
    kube: Kube, namespace: str, n: int, pid: int, seconds: float, rate: float
) -> dict[str, Any]:
    """A steady mix at ``rate`` per second for ``seconds``: spec updates (half), deletes
    and re-creates of what was deleted (a quarter each); RSS sampled every 30 s."""
    rng = random.Random(14)
    base = f"/apis/bgjob.dev/v1alpha1/namespaces/{namespace}/backgroundjobs"
    deleted: list[int] = []
    done = {"update": 0, "delete": 0, "create": 0, "failed": 0}
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    next_sample = started
    step = 0
    print(f"  churn for {seconds:.0f} s at {rate}/s", flush=True)
    while (now := time.monotonic()) - started < seconds:
        if now >= next_sample:
            samples.append((round(now - started, 1), round(rss_mib(pid), 1)))
            print(f"    churn t={samples[-1][0]:.0f}s RSS {samples[-1][1]} MiB {done}", flush=True)
            next_sample += 30.0
        roll = rng.random()
        try:
            if deleted and (roll < 0.25 or len(deleted) > n // 10):
                i = deleted.pop(rng.randrange(len(deleted)))
                kube.request("POST", base, body=manifest(i))
                done["create"] += 1
            elif roll < 0.5:
                i = rng.randrange(n)
                kube.delete("BackgroundJob", namespace, f"bg-{i:05d}", "Background")
                deleted.append(i)
                done["delete"] += 1
            else:
                i = rng.randrange(n)
                body = manifest(i)
                trigger = body["spec"]["trigger"]
                if "schedule" in trigger:
                    spec: dict[str, Any] = {
                        "trigger": {"schedule": {"cron": f"{step % 60} {step % 24} * * *"}}
                    }
                else:
                    spec = {"image": f"{body['spec']['image'].rsplit(':', 1)[0]}:{step % 7}"}
                kube.request(
                    "PATCH",
                    f"{base}/bg-{i:05d}",
                    body={"spec": spec},
                    content_type="application/merge-patch+json",
                )
                done["update"] += 1
        except ApiError:
            done["failed"] += 1  # deleted a moment ago, or re-created before it was gone
        step += 1
        delay = started + step / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    samples.append((round(time.monotonic() - started, 1), round(rss_mib(pid), 1)))
    times, values = [t for t, _ in samples], [v for _, v in samples]
    mean_t, mean_v = sum(times) / len(times), sum(values) / len(values)
    spread = sum((t - mean_t) ** 2 for t in times) or 1.0
    slope = sum((t - mean_t) * (v - mean_v) for t, v in samples) / spread
    return {
        "seconds": round(time.monotonic() - started, 1),
        "rate_per_s": rate,
        "operations": done,
        "rss_start_mib": values[0],
        "rss_end_mib": values[-1],
        "rss_max_mib": max(values),
        "rss_slope_mib_per_hour": round(slope * 3600, 1),
        "rss_samples": samples,
    }


def operator_for(kubeconfig: Path, log: Path, namespace: str) -> Operator:
    return Operator(
        kubeconfig,
        log,
        args=(
            "--log-level=info",
            "--leader-elect",
            f"--leader-election-namespace={namespace}",
            f"--leader-election-id={LEASE}",
        ),
    )


def run(
    n: int,
    rate: float,
    kubeconfig: Path,
    k: Kubectl,
    keep: bool = False,
    churn_seconds: float = 0.0,
    churn_rate: float = 5.0,
) -> dict[str, Any]:
    kube = Kube(load_config(pool_size=64))
    namespace = f"scale-{secrets.token_hex(3)}"
    k.run("create", "namespace", namespace)
    log_dir = Path(tempfile.mkdtemp(prefix="bgjob-scale-"))
    print(f"N={n} namespace={namespace} logs={log_dir}", flush=True)
    operator = operator_for(kubeconfig, log_dir / "operator.log", namespace)
    seen = Seen(kube, namespace, ("BackgroundJob", "CronJob", "Deployment"))
    result: dict[str, Any] = {"n": n, "create_rate_per_s": rate}
    try:
        operator.start()
        eventually(lambda: lease_holder(kube, namespace) is not None, timeout=60)
        seen.start()
        time.sleep(1)
        calls_before = requests(operator)

        # 1. Create N at ``rate``, with direct CronJobs beside them.
        sent: dict[str, float] = {}
        direct_sent: dict[str, float] = {}

        def create(i: int) -> None:
            body = manifest(i)
            name = body["metadata"]["name"]
            sent[name] = time.time()
            kube.request(
                "POST", f"/apis/bgjob.dev/v1alpha1/namespaces/{namespace}/backgroundjobs", body=body
            )
            if "schedule" in body["spec"]["trigger"] and i % DIRECT_EVERY == 1:
                child = direct_child(body, namespace)
                direct_sent[child["metadata"]["name"]] = time.time()
                kube.request("POST", f"/apis/batch/v1/namespaces/{namespace}/cronjobs", body=child)

        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            futures = []
            for i in range(n):
                due = started + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(create, i))
            for future in futures:
                future.result()
        last_create = time.monotonic()
        last_create_wall = time.time()
        result["create_seconds"] = round(last_create - started, 1)
        print(f"  created {n} in {last_create - started:.1f} s", flush=True)

        # 2. Every BackgroundJob reconciled: the lag after the last create.
        def all_reconciled() -> bool:
            return len(seen.reconciled) >= n and all(name in seen.added for name in sent)

        eventually(all_reconciled, timeout=max(300.0, n * 0.2), interval=0.2)
        done = max(seen.reconciled.values())
        result["lag_after_last_create_s"] = round(max(0.0, done - last_create_wall), 2)
        ours = [seen.added[name] - at for name, at in sent.items()]
        direct = [seen.added[name] - at for name, at in direct_sent.items() if name in seen.added]
        result["create_to_child_ms"] = {
            f"p{p}": round(1000 * percentile(ours, p / 100), 1) for p in (50, 95, 99)
        }
        result["direct_create_ms"] = {
            f"p{p}": round(1000 * percentile(direct, p / 100), 1) for p in (50, 95, 99)
        }
        result["direct_samples"] = len(direct)
        result["p99_ratio"] = round(
            result["create_to_child_ms"]["p99"] / max(result["direct_create_ms"]["p99"], 0.1), 2
        )
        print(f"  reconciled all; lag {result['lag_after_last_create_s']} s", flush=True)

        # 3. Settled (no write for 10 s: the children's status changes are reported
        # too), then idle.
        assert operator.process is not None
        pid = operator.process.pid
        settle_started = time.monotonic()
        last, quiet_since = writes(operator), time.monotonic()
        while time.monotonic() - quiet_since < 10:
            time.sleep(2)
            now_writes = writes(operator)
            if now_writes != last:
                last, quiet_since = now_writes, time.monotonic()
            if time.monotonic() - settle_started > max(300.0, n * 0.1):
                break
        result["settled_after_last_create_s"] = round(quiet_since - last_create, 1)
        result["steady_rss_mib"] = round(rss_mib(pid), 1)
        # Every request sent from the first create until settled, per BackgroundJob.
        calls_settled = requests(operator)
        result["requests_per_create"] = per(calls_settled, calls_before, n)
        result["stages"] = stages(
            log_dir / "operator.log", sent, seen.added, seen.reconciled, queue_seconds(operator)
        )
        print(f"  stages: {result['stages']}", flush=True)
        print(f"  requests per create: {result['requests_per_create']}", flush=True)
        before, cpu, at = writes(operator), cpu_seconds(pid), time.monotonic()
        seen.recording = True
        time.sleep(IDLE_SECONDS)
        seen.recording = False
        elapsed = time.monotonic() - at
        cpu_used = cpu_seconds(pid) - cpu
        changed = sorted({name for name, _ in seen.changes})
        result["idle"] = {
            "seconds": round(elapsed, 1),
            "writes": int(writes(operator) - before),
            "cpu_percent_of_one_core": round(100 * cpu_used / elapsed, 2),
            "requests": per(requests(operator), calls_settled, 1),
            "status_changes": len(seen.changes),
            "changed_backgroundjobs": changed[:10],
            "changed_fields": sorted({f for _, fields in seen.changes for f in fields}),
        }
        if churn_seconds > 0:
            result["churn"] = churn(kube, namespace, n, pid, churn_seconds, churn_rate)
        result["stop_after_load"] = stop(operator, kube, namespace)
        print(f"  stopped: {result['stop_after_load']}", flush=True)

        # 4. Cold start with N present.
        log = log_dir / "operator-cold.log"
        operator = operator_for(kubeconfig, log, namespace)
        launched = time.time()
        operator.start()
        timeout = max(300.0, n * 0.1)
        synced = eventually(lambda: logged(log, "cache synced"), timeout=timeout, interval=0.2)
        first = eventually(lambda: logged(log, "first pass done"), timeout=timeout, interval=0.2)
        assert operator.process is not None
        pid = operator.process.pid
        result["cold_start"] = {
            "cache_complete_s": round(synced[0] - launched, 2),
            "first_pass_done_s": round(first[0] - launched, 2),
            "writes_in_first_pass": int(first[1]["writes"]),
            "reconciles": int(first[1]["reconciles"]),
            "cpu_seconds": round(cpu_seconds(pid), 1),
            "rss_mib": round(rss_mib(pid), 1),
            "backgroundjobs_cached": int(synced[1]["backgroundjobs"]),
            "children_cached": int(synced[1]["children"]),
        }
        print(f"  cold start: {result['cold_start']}", flush=True)
        result["stop_after_cold_start"] = stop(operator, kube, namespace)
        print(f"  stopped: {result['stop_after_cold_start']}", flush=True)
    finally:
        seen.stop()
        if operator.process is not None and operator.process.poll() is None:
            operator.stop()
        if not keep:
            k.run("delete", "namespace", namespace, "--wait=false", check=False)
    if keep:
        return result
    # The next size starts on a cluster that is not busy deleting this one.
    eventually(lambda: k.get("namespace", namespace, "default") is None, timeout=900, interval=5)
    return result


# --- results and the plot -----------------------------------------------------------


def load_results() -> dict[str, Any]:
    if RESULTS.exists():
        found: dict[str, Any] = json.loads(RESULTS.read_text())
        return found
    return {"runs": {}}


def plot(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(results["runs"].values(), key=lambda r: r["n"])
    if not runs:
        return
    ns = [r["n"] for r in runs]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    rss = axes[0]
    rss.plot(ns, [r["cold_start"]["rss_mib"] for r in runs], "o-", label="after cold start")
    rss.plot(ns, [r["steady_rss_mib"] for r in runs], "s--", label="after creating them")
    rss.axhline(250, color="grey", linestyle=":", label="goal 250 MiB")
    rss.set_title("operator RSS (MiB)")
    start = axes[1]
    start.plot(
        ns, [r["cold_start"]["cache_complete_s"] for r in runs], "o-", label="cache complete"
    )
    start.plot(
        ns, [r["cold_start"]["first_pass_done_s"] for r in runs], "s--", label="first pass done"
    )
    start.axhline(10, color="grey", linestyle=":", label="goal 10 s (cache)")
    start.set_title("cold start (s)")
    latency = axes[2]
    for pct, style in (("p50", "o-"), ("p99", "s-")):
        latency.plot(
            ns, [r["create_to_child_ms"][pct] for r in runs], style, label=f"operator {pct}"
        )
        latency.plot(
            ns,
            [r["direct_create_ms"][pct] for r in runs],
            style.replace("-", ":"),
            label=f"direct {pct}",
        )
    latency.set_yscale("log")
    latency.set_title("create -> child readable (ms)")
    for ax in axes:
        ax.set_xlabel("BackgroundJobs")
        ax.set_xscale("log")
        ax.set_xticks(ns, [f"{n // 1000}k" if n >= 1000 else str(n) for n in ns])
        ax.minorticks_off()
        ax.set_ylim(bottom=0 if ax is not latency else None)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("bgjob-operator at scale (local control plane, kwok, 2 shared cores)", fontsize=10)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=90)
    print(f"plot written to {PLOT.relative_to(REPO)}")


def summary(r: dict[str, Any]) -> str:
    c, o, d = r["cold_start"], r["create_to_child_ms"], r["direct_create_ms"]
    return "\n".join(
        [
            f"N={r['n']} (created at {r['create_rate_per_s']}/s in {r['create_seconds']} s)",
            f"  create->child ms p50 {o['p50']} p95 {o['p95']} p99 {o['p99']} | direct create "
            f"p50 {d['p50']} p95 {d['p95']} p99 {d['p99']} ({r['direct_samples']} samples) "
            f"| p99 ratio {r['p99_ratio']}",
            f"  lag after the last create {r['lag_after_last_create_s']} s (every status "
            f"written), settled (no write for 10 s) {r.get('settled_after_last_create_s')} s; "
            f"RSS {r['steady_rss_mib']} MiB",
            f"  requests per create: {r.get('requests_per_create')}",
            f"  idle {r['idle']['seconds']} s: writes {r['idle']['writes']}, "
            f"CPU {r['idle']['cpu_percent_of_one_core']} % of a core, "
            f"requests {r['idle'].get('requests')}, status changes "
            f"{r['idle'].get('status_changes')} {r['idle'].get('changed_fields')}",
            f"  SIGTERM -> exit {r['stop_after_load']['sigterm_to_exit_s']} s, Lease released "
            f"{r['stop_after_load']['lease_released']}",
            f"  cold start: cache complete {c['cache_complete_s']} s, first pass done "
            f"{c['first_pass_done_s']} s, writes {c['writes_in_first_pass']}, "
            f"CPU {c['cpu_seconds']} s, RSS {c['rss_mib']} MiB",
            f"  SIGTERM -> exit {r['stop_after_cold_start']['sigterm_to_exit_s']} s, Lease "
            f"released {r['stop_after_cold_start']['lease_released']}",
        ]
        + (
            [
                f"  churn {ch['seconds']} s {ch['operations']}: RSS start "
                f"{ch['rss_start_mib']} end {ch['rss_end_mib']} max {ch['rss_max_mib']} MiB, "
                f"slope {ch['rss_slope_mib_per_hour']} MiB/h"
            ]
            if (ch := r.get("churn"))
            else []
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="BackgroundJobs (default 10000)")
    parser.add_argument("--sizes", help="several N in one go, e.g. 1000,3000,10000")
    parser.add_argument("--rate", type=float, default=30.0, help="creates per second")
    parser.add_argument("--keep", action="store_true", help="keep the namespace (to profile)")
    parser.add_argument(
        "--churn-seconds",
        type=float,
        default=0.0,
        help="after the idle phase: spec updates, deletes and re-creates for this long",
    )
    parser.add_argument("--churn-rate", type=float, default=5.0, help="churn operations per second")
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from the JSON")
    args = parser.parse_args()
    results = load_results()
    if not args.plot_only:
        kubeconfig = os.environ.get("KUBECONFIG")
        if not kubeconfig:
            subprocess.run([str(REPO / "hack" / "cluster.sh"), "up"], check=True)
            kubeconfig = str(REPO / ".cluster" / "kubeconfig")
        os.environ["KUBECONFIG"] = kubeconfig
        k = Kubectl(kubeconfig, bin_dir())
        k.run("apply", "--server-side", "-f", str(REPO / "crds" / "bgjob.dev_backgroundjobs.yaml"))
        k.run("wait", "--for=condition=Established", "crd/backgroundjobs.bgjob.dev")
        sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [args.n]
        for n in sizes:
            result = run(
                n,
                args.rate,
                Path(kubeconfig),
                k,
                keep=args.keep,
                churn_seconds=args.churn_seconds,
                churn_rate=args.churn_rate,
            )
            result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            # A churn run is kept apart: its load phase is not the plot's.
            results.setdefault("churn", {})
            (results["churn"] if args.churn_seconds > 0 else results["runs"])[str(n)] = result
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
            print(summary(result), flush=True)
        print(f"written to {RESULTS.relative_to(REPO)}")
    try:
        plot(results)
    except ImportError:
        print("no plot: matplotlib is not installed (pip install -e '.[bench]')")


if __name__ == "__main__":
    main()
