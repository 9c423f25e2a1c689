"""Prometheus metrics: every number on /metrics is defined here."""

from __future__ import annotations

import platform
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bgjob import __version__
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
QUEUE_PROBES = Counter(
    "bgjob_queue_probes_total",
    "Backlog reads sent to brokers, by backend and result (ok, error).",
    ["backend", "result"],
)


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
