"""The watch-fed cache never lets our own, older write hide a newer event."""

from __future__ import annotations

from typing import Any

from bgjob.store import Store


def statefulset(version: str, observed: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "solo",
            "namespace": "shop",
            "resourceVersion": version,
            "labels": {"app.kubernetes.io/instance": "solo"},
        },
        "spec": {"replicas": 0},
        "status": {"observedGeneration": observed},
    }


def cached(store: Store) -> dict[str, Any]:
    return store.children(("shop", "solo"))[("StatefulSet", "solo")]


def test_our_apply_result_is_kept_when_nothing_newer_arrived() -> None:
    store = Store()
    store.refresh_child(statefulset("7", 0), "StatefulSet", "apps/v1", seen_version=None)
    assert cached(store)["metadata"]["resourceVersion"] == "7"


def test_an_event_that_arrived_during_our_apply_is_not_overwritten() -> None:
    store = Store()
    store.put_child(statefulset("5", 1), "StatefulSet", "apps/v1")
    # The controller's status update (8) came through the watch while our apply (7),
    # based on what we had read (5), was on its way back.
    store.put_child(statefulset("8", 2), "StatefulSet", "apps/v1")
    store.refresh_child(statefulset("7", 1), "StatefulSet", "apps/v1", seen_version="5")
    assert cached(store)["metadata"]["resourceVersion"] == "8"
    assert cached(store)["status"]["observedGeneration"] == 2
