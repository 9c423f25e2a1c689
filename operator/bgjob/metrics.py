"""Prometheus metrics: every number on /metrics is defined here."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bgjob.store import Store

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
QUEUE_PROBES = Counter(
    "bgjob_queue_probes_total",
    "Backlog reads sent to brokers, by backend and result (ok, error).",
    ["backend", "result"],
)


def observe_reconcile(result: str, seconds: float) -> None:
    """Count one reconcile and its duration."""
    RECONCILES.labels(result=result).inc()
    RECONCILE_SECONDS.observe(seconds)


class StoreCollector(Collector):
    """Gauges read from the cache at scrape time, so events cost nothing extra."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        states = GaugeMetricFamily(
            "bgjob_backgroundjobs", "BackgroundJobs by state.", labels=["state"]
        )
        desired = GaugeMetricFamily(
            "bgjob_desired_replicas",
            "Pods each BackgroundJob wants.",
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
        tally: Tally[str] = Tally()
        for (namespace, name), status in self.store.statuses():
            if status.get("queueLength") is not None:
                backlog.add_metric([namespace, name], float(status["queueLength"]))
            tally[str(status.get("state") or "Unknown")] += 1
            if status.get("desiredReplicas") is not None:
                desired.add_metric([namespace, name], float(status["desiredReplicas"]))
            if status.get("readyReplicas") is not None:
                ready.add_metric([namespace, name], float(status["readyReplicas"]))
        for state, count in sorted(tally.items()):
            states.add_metric([state], float(count))
        yield states
        yield desired
        yield ready
        yield backlog


_collector: StoreCollector | None = None


def watch_store(store: Store) -> None:
    """Publish the cache's gauges (once per process)."""
    global _collector
    if _collector is None:
        _collector = StoreCollector(store)
        REGISTRY.register(_collector)
    else:
        _collector.store = store
