"""/metrics as a scraper reads it: build info, and the cache's gauges from the leader only."""

from __future__ import annotations

import platform
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bgjob import __version__, metrics
from bgjob.store import Store


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    page = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }


def bgjob(name: str, concurrency: int, status: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "bgjob.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"namespace": "shop", "name": name, "resourceVersion": "1"},
        "spec": {"concurrency": concurrency},
        "status": status,
    }


@pytest.fixture
def leader() -> Iterator[None]:
    before = metrics.is_leader()
    yield
    metrics.LEADER.set(1 if before else 0)


@pytest.fixture
def registry() -> CollectorRegistry:
    store = Store()
    store.put_bgjob(
        bgjob(
            "workers",
            5,
            {
                "state": "Running",
                "desiredReplicas": 5,
                "readyReplicas": 4,
                "queueLength": 120,
                "busyWorkers": 2,
                "conditions": [
                    {"type": "Ready", "status": "False"},
                    {"type": "Degraded", "status": "True"},
                ],
            },
        )
    )
    store.put_bgjob(bgjob("fresh", 1, {}))
    registry = CollectorRegistry()
    registry.register(metrics.StoreCollector(store))
    return registry


def test_the_leader_exports_the_state_of_every_backgroundjob(
    registry: CollectorRegistry, leader: None
) -> None:
    metrics.LEADER.set(1)
    got = samples(registry)
    who = (("name", "workers"), ("namespace", "shop"))
    assert got[("bgjob_desired_replicas", who)] == 5
    assert got[("bgjob_ready_replicas", who)] == 4
    assert got[("bgjob_max_replicas", who)] == 5
    assert got[("bgjob_max_replicas", (("name", "fresh"), ("namespace", "shop")))] == 1
    assert got[("bgjob_queue_backlog", who)] == 120
    assert got[("bgjob_queue_busy_workers", who)] == 2
    assert got[("bgjob_condition", (("condition", "Degraded"), *who))] == 1
    assert got[("bgjob_condition", (("condition", "Ready"), *who))] == 0
    assert got[("bgjob_backgroundjobs", (("state", "Running"),))] == 1
    assert got[("bgjob_backgroundjobs", (("state", "Unknown"),))] == 1
    assert {name for name, _ in got} == set(metrics.STATE_GAUGES)


def test_a_standby_exports_none_of_them_so_sum_counts_once(
    registry: CollectorRegistry, leader: None
) -> None:
    metrics.LEADER.set(0)
    assert samples(registry) == {}
    metrics.LEADER.set(1)
    assert samples(registry) != {}


def test_build_info_names_the_version_and_python() -> None:
    labels = {"version": __version__, "python": platform.python_version()}
    assert REGISTRY.get_sample_value("bgjob_build_info", labels) == 1
