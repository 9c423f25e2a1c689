"""Prometheus metrics: every number on /metrics is defined here."""

from __future__ import annotations

import contextlib
import platform
import threading
import time
import weakref
from collections import Counter as Tally
from collections.abc import Callable, Hashable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bgjob import __version__
from bgjob.api.models import QUEUE_BACKENDS
from bgjob.store import Store

BUILD_INFO = Gauge(
    "bgjob_build_info",
    "Always 1; the operator's version and the Python it runs on, as labels.",
    ["version", "python"],
)
BUILD_INFO.labels(version=__version__, python=platform.python_version()).set(1)

RECONCILES = Counter(
    "bgjob_reconcile_total",
    "BackgroundJob reconciles, by result (success, retry, error).",
    ["result"],
)
RECONCILE_SECONDS = Histogram(
    "bgjob_reconcile_duration_seconds",
    "Time to reconcile one BackgroundJob.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


LEADER = Gauge(
    "bgjob_leader",
    "1 while this process holds the leader-election Lease (or runs without election).",
)
WATCH_RESTARTS = Counter(
    "bgjob_watch_restarts_total",
    "Watches that ended in a new LIST, by kind and reason (expired: 410 Gone; error).",
    ["kind", "reason"],
)
RECONCILE_DEGRADED = Counter(
    "bgjob_reconcile_degraded_total",
    "BackgroundJobs marked Degraded (ReconcileError) after repeated unexpected errors.",
)
# Named and labelled as client-go's, so existing dashboards for Go controllers read it.
API_REQUESTS = Counter(
    "rest_client_requests",
    "Requests sent to the API server, by method, resource and HTTP code (0: no answer).",
    ["method", "resource", "code"],
)
QUEUE_PROBES = Counter(
    "bgjob_queue_probes_total",
    "Backlog reads sent to brokers, by backend and result (ok, error).",
    ["backend", "result"],
)


QUEUE_PROBE_ERRORS = Counter(
    "bgjob_queue_probe_errors",
    "Polls of a queue-triggered BackgroundJob that ended in a broker error (refused, "
    "timed out, denied): one per BackgroundJob and round, however many share the queue.",
    ["namespace", "name", "backend"],
)
PROBE_BACKENDS = QUEUE_BACKENDS


def probe_failed(namespace: str, name: str, backend: str) -> None:
    """Count one failed broker read for one BackgroundJob."""
    QUEUE_PROBE_ERRORS.labels(namespace=namespace, name=name, backend=backend).inc()


def forget_probe_errors(namespace: str, name: str, keep: str | None = None) -> None:
    """Drop a BackgroundJob's probe error series (all backends but ``keep``): no series
    outlives the BackgroundJob the scaler tracked, so the label set stays bounded."""
    for backend in PROBE_BACKENDS:
        if backend != keep:
            with contextlib.suppress(KeyError):  # older prometheus-client raise on a miss
                QUEUE_PROBE_ERRORS.remove(namespace, name, backend)


def observe_reconcile(result: str, seconds: float) -> None:
    """Count one reconcile and its duration."""
    RECONCILES.labels(result=result).inc()
    RECONCILE_SECONDS.observe(seconds)


def is_leader() -> bool:
    """Whether this process holds the Lease (or runs without election)."""
    return any(sample.value == 1 for family in LEADER.collect() for sample in family.samples)


# Gauges describing the BackgroundJobs themselves (not this process). Every
# replica keeps a warm cache, so each could export them; only the leader does,
# so that sum(bgjob_backgroundjobs) counts each BackgroundJob once and an alert
# on a BackgroundJob fires once, without every query having to pick a replica.
STATE_GAUGES = (
    "bgjob_backgroundjobs",
    "bgjob_desired_replicas",
    "bgjob_max_replicas",
    "bgjob_ready_replicas",
    "bgjob_queue_backlog",
    "bgjob_queue_busy_workers",
    "bgjob_condition",
)


class StoreCollector(Collector):
    """Gauges read from the cache at scrape time, so events cost nothing extra.

    Exported by the leader only (see STATE_GAUGES); a standby's /metrics has
    none of them, and after a failover the new leader's carry on.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Names for the registry's duplicate check, without reading the cache
        # (nor asking whether this process leads) at registration.
        return self._families(Store())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if not is_leader():
            return iter(())
        return self._families(self.store)

    @staticmethod
    def _families(store: Store) -> Iterator[GaugeMetricFamily]:
        states = GaugeMetricFamily(
            "bgjob_backgroundjobs", "BackgroundJobs by state.", labels=["state"]
        )
        desired = GaugeMetricFamily(
            "bgjob_desired_replicas",
            "Pods each BackgroundJob wants.",
            labels=["namespace", "name"],
        )
        most = GaugeMetricFamily(
            "bgjob_max_replicas",
            "Most pods each BackgroundJob may have (spec.concurrency).",
            labels=["namespace", "name"],
        )
        ready = GaugeMetricFamily(
            "bgjob_ready_replicas",
            "Ready pods of each BackgroundJob.",
            labels=["namespace", "name"],
        )
        backlog = GaugeMetricFamily(
            "bgjob_queue_backlog",
            "Messages waiting, as last reported in status (queue trigger).",
            labels=["namespace", "name"],
        )
        busy = GaugeMetricFamily(
            "bgjob_queue_busy_workers",
            "The pool's workers busy with a job, as last reported in status (queue.rq).",
            labels=["namespace", "name"],
        )
        conditions = GaugeMetricFamily(
            "bgjob_condition",
            "1 while a condition of a BackgroundJob is True, else 0 (Ready, Degraded, Stalled).",
            labels=["namespace", "name", "condition"],
        )
        tally: Tally[str] = Tally()
        for (namespace, name), status in store.statuses():
            body = store.bgjob((namespace, name)) or {}
            most.add_metric([namespace, name], float(body.get("spec", {}).get("concurrency", 1)))
            for cond in status.get("conditions") or ():
                conditions.add_metric(
                    [namespace, name, str(cond.get("type"))],
                    1.0 if cond.get("status") == "True" else 0.0,
                )
            if status.get("queueLength") is not None:
                backlog.add_metric([namespace, name], float(status["queueLength"]))
            if status.get("busyWorkers") is not None:
                busy.add_metric([namespace, name], float(status["busyWorkers"]))
            tally[str(status.get("state") or "Unknown")] += 1
            if status.get("desiredReplicas") is not None:
                desired.add_metric([namespace, name], float(status["desiredReplicas"]))
            if status.get("readyReplicas") is not None:
                ready.add_metric([namespace, name], float(status["readyReplicas"]))
        for state, count in sorted(tally.items()):
            states.add_metric([state], float(count))
        yield states
        yield desired
        yield most
        yield ready
        yield backlog
        yield busy
        yield conditions


_collector: StoreCollector | None = None


def watch_store(store: Store) -> None:
    """Publish the cache's gauges (once per process)."""
    global _collector
    if _collector is None:
        _collector = StoreCollector(store)
        REGISTRY.register(_collector)
    else:
        _collector.store = store


# --- the work queue -----------------------------------------------------------------------
#
# Named and shaped like controller-runtime's (client-go's workqueue metrics), so the
# dashboards and alerts people already have for Go controllers work unchanged.

# prometheus.ExponentialBuckets(10e-9, 10, 12): 10 ns to 1000 s.
WORKQUEUE_BUCKETS = tuple(float(f"1e{exponent}") for exponent in range(-8, 4))

WORKQUEUE_DEPTH = Gauge("workqueue_depth", "Current depth of the work queue.", ["name"])
WORKQUEUE_ADDS = Counter(
    "workqueue_adds", "Adds handled by the work queue (an add of a pending key is none).", ["name"]
)
WORKQUEUE_QUEUE_SECONDS = Histogram(
    "workqueue_queue_duration_seconds",
    "How long in seconds a key waits in the work queue before a worker takes it.",
    ["name"],
    buckets=WORKQUEUE_BUCKETS,
)
WORKQUEUE_WORK_SECONDS = Histogram(
    "workqueue_work_duration_seconds",
    "How long in seconds handling a key taken from the work queue takes.",
    ["name"],
    buckets=WORKQUEUE_BUCKETS,
)
WORKQUEUE_RETRIES = Counter(
    "workqueue_retries", "Keys queued again with backoff after a failure.", ["name"]
)


class QueueMetrics:
    """The work-queue metrics of one named queue, recorded as client-go records them.

    Called from the queue's event loop; the two in-progress gauges are read by the
    scraper's thread (WorkQueueCollector), hence the lock around the start times.
    """

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.clock = clock
        self._depth = WORKQUEUE_DEPTH.labels(name=name)
        self._adds = WORKQUEUE_ADDS.labels(name=name)
        self._waited = WORKQUEUE_QUEUE_SECONDS.labels(name=name)
        self._worked = WORKQUEUE_WORK_SECONDS.labels(name=name)
        self._retries = WORKQUEUE_RETRIES.labels(name=name)
        self._added_at: dict[Hashable, float] = {}
        self._started_at: dict[Hashable, float] = {}
        self._lock = threading.Lock()
        _queues.add(self)

    def added(self, key: Hashable) -> None:
        """A key not already pending was added (waiting now, or after its current run)."""
        self._adds.inc()
        self._depth.inc()
        self._added_at.setdefault(key, self.clock())

    def taken(self, key: Hashable) -> None:
        """A worker took ``key``: its wait ends, its work starts."""
        now = self.clock()
        self._depth.dec()
        added = self._added_at.pop(key, None)
        if added is not None:
            self._waited.observe(now - added)
        with self._lock:
            self._started_at[key] = now

    def done(self, key: Hashable) -> None:
        """The worker is done with ``key`` (whatever the outcome)."""
        with self._lock:
            started = self._started_at.pop(key, None)
        if started is not None:
            self._worked.observe(self.clock() - started)

    def retried(self) -> None:
        """A key was queued again with backoff."""
        self._retries.inc()

    def in_progress(self) -> list[float]:
        """Seconds each key being handled has run so far."""
        now = self.clock()
        with self._lock:
            return [now - started for started in self._started_at.values()]


# Every live queue, for the gauges computed at scrape time; a queue that is gone drops out.
_queues: weakref.WeakSet[QueueMetrics] = weakref.WeakSet()


class WorkQueueCollector(Collector):
    """workqueue_unfinished_work_seconds and workqueue_longest_running_processor_seconds,
    from the start times of the keys being handled, at scrape time (client-go updates
    them every 500 ms; reading them when asked is exact and costs nothing in between)."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return self._families([])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self._families(list(_queues))

    @staticmethod
    def _families(queues: list[QueueMetrics]) -> Iterator[GaugeMetricFamily]:
        unfinished = GaugeMetricFamily(
            "workqueue_unfinished_work_seconds",
            "Seconds of work in progress not yet observed by work_duration; a value "
            "that keeps growing means stuck workers (its rate: how many).",
            labels=["name"],
        )
        longest = GaugeMetricFamily(
            "workqueue_longest_running_processor_seconds",
            "Seconds the longest-running handling of a key has run so far.",
            labels=["name"],
        )
        running: dict[str, list[float]] = {}
        for queue in queues:
            running.setdefault(queue.name, []).extend(queue.in_progress())
        for name, seconds in sorted(running.items()):
            unfinished.add_metric([name], sum(seconds))
            longest.add_metric([name], max(seconds, default=0.0))
        yield unfinished
        yield longest


REGISTRY.register(WorkQueueCollector())
