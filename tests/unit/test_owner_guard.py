"""Before creating a child, its BackgroundJob must still exist: from the cache while
the BackgroundJobs' watch is unbroken, with one GET while it is not (a relist)."""

from __future__ import annotations

from typing import Any

import pytest

from bgjob.handlers import Runtime
from bgjob.informer import Informer
from bgjob.kube import OwnerGone
from bgjob.store import Store

NS, NAME, UID = "shop", "mailer", "uid-1"


class Kube:
    fence = None
    owner_guard = None

    def __init__(self, live_uid: str | None) -> None:
        self.live_uid = live_uid
        self.gets: list[tuple[str, str, str]] = []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets.append((kind, namespace, name))
        if self.live_uid is None:
            return None
        return {"metadata": {"name": name, "namespace": namespace, "uid": self.live_uid}}


def child() -> dict[str, Any]:
    ref = {"apiVersion": "bgjob.dev/v1alpha1", "kind": "BackgroundJob", "name": NAME}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "ownerReferences": [{**ref, "uid": UID, "controller": True}],
        },
    }


def runtime(kube: Kube, *, live: bool | None) -> Runtime:
    store = Store()
    store.put_bgjob(
        {
            "apiVersion": "bgjob.dev/v1alpha1",
            "kind": "BackgroundJob",
            "metadata": {"name": NAME, "namespace": NS, "uid": UID, "resourceVersion": "1"},
            "spec": {"image": "w:1", "trigger": {"continuous": {}}},
        }
    )
    rt = Runtime(kube=kube, workers=1, store=store)  # type: ignore[arg-type]
    if live is not None:
        informer = Informer(kube, "BackgroundJob", None, sink=None)  # type: ignore[arg-type]
        informer.live = live
        rt.informers.append(informer)
    return rt


def test_an_unbroken_watch_answers_without_a_get() -> None:
    kube = Kube(live_uid=UID)
    runtime(kube, live=True).owner_guard(child())
    assert kube.gets == []


@pytest.mark.parametrize("live", [False, None])
def test_in_a_watch_gap_the_owner_is_read_before_a_create(live: bool | None) -> None:
    kube = Kube(live_uid=UID)
    runtime(kube, live=live).owner_guard(child())
    assert kube.gets == [("BackgroundJob", NS, NAME)]


def test_in_a_watch_gap_an_owner_deleted_meanwhile_stops_the_create() -> None:
    kube = Kube(live_uid=None)
    with pytest.raises(OwnerGone):
        runtime(kube, live=False).owner_guard(child())


def test_an_owner_the_cache_no_longer_holds_stops_the_create_even_with_a_live_watch() -> None:
    kube = Kube(live_uid=UID)
    rt = runtime(kube, live=True)
    rt.store.drop_bgjob((NS, NAME))
    with pytest.raises(OwnerGone):
        rt.owner_guard(child())
    assert kube.gets == []
