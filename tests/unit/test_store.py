"""The cache: owned children only, exact after a relist, never hiding a newer event."""

from __future__ import annotations

from typing import Any

import pytest

from bgjob.store import Store

NS = "shop"
UID = "uid-solo-1"


def bgjob(name: str = "solo", uid: str = UID, version: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "bgjob.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": name, "namespace": NS, "uid": uid, "resourceVersion": version},
        "spec": {"image": "worker:1"},
    }


def owned(
    kind: str,
    name: str,
    *,
    owner_kind: str = "BackgroundJob",
    owner: str = "solo",
    owner_uid: str = UID,
    uid: str | None = None,
    version: str = "1",
    controller: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": uid or f"uid-{kind}-{name}",
            "resourceVersion": version,
            "labels": {"app.kubernetes.io/instance": owner},
            "ownerReferences": [
                {"kind": owner_kind, "name": owner, "uid": owner_uid, "controller": controller}
            ],
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            **extra,
        },
        "spec": {"replicas": 0},
        "status": {"observedGeneration": 1},
    }


def statefulset(version: str, observed: int) -> dict[str, Any]:
    body = owned("StatefulSet", "solo", version=version)
    body["status"] = {"observedGeneration": observed}
    return body


def cached(store: Store) -> dict[str, Any]:
    return store.children((NS, "solo"))[("StatefulSet", "solo")]


def names(store: Store, owner: str = "solo") -> set[tuple[str, str]]:
    return set(store.children((NS, owner)))


def test_our_apply_result_is_kept_when_nothing_newer_arrived() -> None:
    store = Store()
    store.put_bgjob(bgjob())
    store.refresh_child(statefulset("7", 0), "StatefulSet", "apps/v1", seen_version=None)
    assert cached(store)["metadata"]["resourceVersion"] == "7"


def test_an_event_that_arrived_during_our_apply_is_not_overwritten() -> None:
    store = Store()
    store.put_bgjob(bgjob())
    store.put_child(statefulset("5", 1), "StatefulSet", "apps/v1")
    # The controller's status update (8) came through the watch while our apply (7),
    # based on what we had read (5), was on its way back.
    store.put_child(statefulset("8", 2), "StatefulSet", "apps/v1")
    store.refresh_child(statefulset("7", 1), "StatefulSet", "apps/v1", seen_version="5")
    assert cached(store)["metadata"]["resourceVersion"] == "8"
    assert cached(store)["status"]["observedGeneration"] == 2


@pytest.mark.parametrize(
    ("child", "held"),
    [
        (owned("Deployment", "solo"), True),
        # Our label, but no owner reference: a tenant's object is never held.
        ({**owned("Deployment", "solo"), "metadata": {"name": "solo", "namespace": NS}}, False),
        (owned("Deployment", "solo", owner_uid="uid-of-a-deleted-solo"), False),
        (owned("Deployment", "solo", controller=False), False),
        (owned("Deployment", "solo", owner_kind="ReplicaSet"), False),
    ],
    ids=["controlled", "label-only", "other-uid", "not-controller", "other-kind"],
)
def test_only_children_a_cached_backgroundjob_controls_are_held(
    child: dict[str, Any], held: bool
) -> None:
    store = Store()
    store.put_bgjob(bgjob())
    owner = store.put_child(child, "Deployment", "apps/v1")
    assert (owner == (NS, "solo")) is held
    assert (("Deployment", "solo") in store.children((NS, "solo"))) is held
    assert store.sizes() == (1, int(held))


def test_held_bodies_are_trimmed() -> None:
    store = Store()
    store.put_bgjob(bgjob())
    store.put_child(owned("Deployment", "solo"), "Deployment", "apps/v1")
    body = store.children((NS, "solo"))[("Deployment", "solo")]
    assert "managedFields" not in body["metadata"]
    assert body["kind"] == "Deployment" and body["apiVersion"] == "apps/v1"


def test_a_child_seen_before_its_owner_waits_and_is_adopted() -> None:
    store = Store()
    assert store.put_child(owned("Deployment", "solo"), "Deployment", "apps/v1") is None
    assert store.sizes() == (0, 0) and store.pending() == 1
    store.put_bgjob(bgjob())
    assert names(store) == {("Deployment", "solo")}
    assert store.pending() == 0


def test_runs_of_a_cronjob_follow_the_cronjob_to_its_backgroundjob() -> None:
    store = Store()
    run = owned("Job", "solo-29000000", owner_kind="CronJob", owner_uid="uid-CronJob-solo")
    store.put_child(run, "Job", "batch/v1")  # before its CronJob and BackgroundJob
    store.put_child(owned("CronJob", "solo"), "CronJob", "batch/v1")
    assert store.sizes() == (0, 0) and store.pending() == 2
    store.put_bgjob(bgjob())
    assert names(store) == {("CronJob", "solo"), ("Job", "solo-29000000")}
    # The BackgroundJob goes: nothing is held for it any more.
    store.drop_bgjob((NS, "solo"))
    assert store.sizes() == (0, 0)


def test_a_recreated_backgroundjob_does_not_inherit_the_old_ones_children() -> None:
    store = Store()
    store.put_bgjob(bgjob())
    store.put_child(owned("Deployment", "solo"), "Deployment", "apps/v1")
    store.put_bgjob(bgjob(uid="uid-solo-2", version="9"))
    assert names(store) == set()


def test_pending_children_are_bounded() -> None:
    store = Store(max_pending=2)
    for i in range(5):
        store.put_child(owned("Deployment", f"d{i}", owner_uid=f"u{i}"), "Deployment", "apps/v1")
    assert store.pending() == 2
    assert store.dropped == 3


def test_a_relist_makes_the_backgroundjobs_exactly_what_was_listed() -> None:
    store = Store()
    store.put_bgjob(bgjob("kept"))
    store.put_bgjob(bgjob("ghost", uid="uid-ghost"))
    store.put_bgjob(bgjob("edited", uid="uid-edited"))
    store.put_bgjob(
        {
            **bgjob("elsewhere", uid="uid-x"),
            "metadata": {
                "name": "elsewhere",
                "namespace": "other",
                "uid": "uid-x",
                "resourceVersion": "1",
            },
        }
    )
    store.put_child(
        owned("Deployment", "ghost", owner="ghost", owner_uid="uid-ghost"), "Deployment", "apps/v1"
    )

    changed = store.replace_bgjobs(
        [bgjob("kept"), bgjob("edited", uid="uid-edited", version="5"), bgjob("new", uid="n")],
        NS,
    )

    assert changed == {(NS, "ghost"), (NS, "edited"), (NS, "new")}
    assert sorted(store.bgjob_keys()) == [
        ("other", "elsewhere"),
        (NS, "edited"),
        (NS, "kept"),
        (NS, "new"),
    ]
    assert store.children((NS, "ghost")) == {}
    assert store.bgjob((NS, "edited"))["metadata"]["resourceVersion"] == "5"  # type: ignore[index]


def test_a_relist_that_changes_nothing_queues_nothing() -> None:
    store = Store()
    store.put_bgjob(bgjob())
    store.put_child(owned("Deployment", "solo"), "Deployment", "apps/v1")
    assert store.replace_bgjobs([bgjob()], None) == set()
    assert (
        store.replace_children([owned("Deployment", "solo")], "Deployment", "apps/v1", None)
        == set()
    )


def test_a_relist_of_children_drops_the_vanished_and_reports_their_owners() -> None:
    store = Store()
    store.put_bgjob(bgjob())
    store.put_bgjob(bgjob("other", uid="uid-other"))
    store.put_child(owned("Deployment", "solo"), "Deployment", "apps/v1")
    store.put_child(owned("CronJob", "solo"), "CronJob", "batch/v1")
    store.put_child(
        owned("Deployment", "other", owner="other", owner_uid="uid-other", version="3"),
        "Deployment",
        "apps/v1",
    )

    # Deployment solo was deleted during the gap, Deployment other changed.
    changed = store.replace_children(
        [owned("Deployment", "other", owner="other", owner_uid="uid-other", version="4")],
        "Deployment",
        "apps/v1",
        NS,
    )

    assert changed == {(NS, "solo"), (NS, "other")}
    assert names(store) == {("CronJob", "solo")}  # another kind: untouched
    assert names(store, "other") == {("Deployment", "other")}
