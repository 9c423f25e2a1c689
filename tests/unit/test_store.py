"""The cache: owned children only, exact after a relist, never hiding a newer event."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bgjob.api.names import RUN_NOW_ANNOTATION, SPEC_HASH_ANNOTATION
from bgjob.reconcile import needs_apply
from bgjob.store import MAX_MESSAGE, Digest, Store, compact, trim

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


def test_the_echo_of_our_own_writes_is_nothing_new_and_anything_else_is() -> None:
    store = Store()
    assert store.update_bgjob(bgjob(version="1")) == (NS, "solo")  # first seen
    written = {**bgjob(version="2"), "status": {"observedGeneration": 1}}
    store.refresh_bgjob(written, seen_version="1")  # our status write's answer
    assert store.update_bgjob(written) is None  # its watch event: our own write
    assert store.update_bgjob(bgjob(version="3")) == (NS, "solo")  # someone else's edit

    store.refresh_child(statefulset("7", 0), "StatefulSet", "apps/v1", seen_version=None)
    assert store.update_child(statefulset("7", 0), "StatefulSet", "apps/v1") == (False, None)
    assert store.update_child(statefulset("9", 1), "StatefulSet", "apps/v1") == (
        True,
        (NS, "solo"),
    )
    assert cached(store)["status"]["observedGeneration"] == 1
    # A new object under the same name and version is new, whatever the version says.
    assert store.update_bgjob(bgjob(uid="uid-solo-2", version="3")) == (NS, "solo")


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


# --- what a tenant can make the operator hold -------------------------------------------

BIG = "x" * 1_000_000


def worker(env_value: str = "1", *, tenant_env: str | None = None) -> dict[str, Any]:
    """A Deployment as the API server returns it: ours, with defaults and extras."""
    env = [{"name": "MODE", "value": env_value}]
    if tenant_env is not None:
        env.append({"name": "PAD", "value": tenant_env})
    body = owned(
        "Deployment",
        "solo",
        labels={"app.kubernetes.io/instance": "solo", "tenant/pad": "y" * 63},
        annotations={
            SPEC_HASH_ANNOTATION: "h1",
            "kubectl.kubernetes.io/last-applied-configuration": BIG,
        },
    )
    body["spec"] = {
        "replicas": 2,
        "revisionHistoryLimit": 10,
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/instance": "solo"}},
            "spec": {
                "containers": [
                    {"name": "worker", "image": "worker:1", "env": env, "imagePullPolicy": "Always"}
                ]
            },
        },
    }
    body["status"] = {
        "observedGeneration": 3,
        "replicas": 2,
        "readyReplicas": 2,
        "updatedReplicas": 2,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "R", "message": "m" * 100_000}
        ],
        "tenantPad": BIG,
    }
    return body


def desired_worker(env_value: str = "1") -> dict[str, Any]:
    """What the operator would apply for that Deployment."""
    return {
        "metadata": {
            "labels": {"app.kubernetes.io/instance": "solo"},
            "annotations": {SPEC_HASH_ANNOTATION: "h1"},
        },
        "spec": {
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/instance": "solo"}},
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "image": "worker:1",
                            "env": [{"name": "MODE", "value": env_value}],
                        }
                    ]
                },
            }
        },
    }


def held(body: dict[str, Any], kind: str = "Deployment") -> dict[str, Any]:
    store = Store()
    store.put_bgjob(bgjob())
    store.put_child(body, kind, "apps/v1" if kind != "Job" else "batch/v1")
    return store.children((NS, "solo"))[(kind, "solo")]


def size(value: Any) -> int:
    return len(json.dumps(value))


def test_a_tenants_megabyte_env_value_is_held_as_a_digest_and_still_seen_as_drift() -> None:
    child = held(worker(tenant_env=BIG))
    assert size(child) < 10_000  # was over 1 MB; a 4 KB message cap dominates
    # The extra env entry is still there (as a digest): the env list differs from ours.
    assert needs_apply(child, desired_worker())
    assert not needs_apply(held(worker()), desired_worker())


def test_a_long_value_the_operator_set_still_matches_and_an_edit_of_it_does_not() -> None:
    ours = "v" * 5_000
    child = held(worker(ours))
    assert size(child) < 10_000  # was over 1 MB; a 4 KB message cap dominates
    assert not needs_apply(child, desired_worker(ours))
    assert needs_apply(held(worker(ours[:-1] + "w")), desired_worker(ours))
    assert needs_apply(held(worker("1")), desired_worker(ours))


@pytest.mark.parametrize(
    ("observed", "desired", "same"),
    [
        ("a" * 300, "a" * 300, True),
        ("a" * 300, "a" * 299 + "b", False),
        ("a" * 300, "short", False),
        ("a" * 300, None, False),
        ("a" * 300, 3, False),
    ],
)
def test_a_digest_equals_exactly_the_strings_with_its_content(
    observed: str, desired: Any, same: bool
) -> None:
    digest = compact(observed)
    assert isinstance(digest, Digest) and len(digest) < 100
    assert (digest == desired) is same
    assert (digest != desired) is not same
    assert compact(digest) is digest  # trimming twice changes nothing


def test_only_the_status_fields_the_operator_reads_are_held() -> None:
    status = held(worker())["status"]
    assert set(status) == {
        "observedGeneration",
        "replicas",
        "readyReplicas",
        "updatedReplicas",
        "conditions",
    }
    (cond,) = status["conditions"]
    assert cond["type"] == "Available" and len(cond["message"]) == MAX_MESSAGE
    job = owned("Job", "solo")
    job["spec"] = {"template": {"spec": {"containers": [{"name": "c", "env": [{"value": BIG}]}]}}}
    job["status"] = {
        "startTime": "t0",
        "completionTime": "t1",
        "active": 1,
        "ready": 1,
        "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "t1"}],
        "uncountedTerminatedPods": {"succeeded": ["u"] * 1000},
    }
    held_job = held(job, "Job")
    assert held_job["spec"] == {}
    assert set(held_job["status"]) == {
        "startTime",
        "completionTime",
        "active",
        "ready",
        "conditions",
    }


def test_only_our_labels_and_annotations_of_a_child_are_held() -> None:
    meta = held(worker())["metadata"]
    assert meta["labels"] == {"app.kubernetes.io/instance": "solo"}
    assert meta["annotations"] == {SPEC_HASH_ANNOTATION: "h1"}


def test_a_backgroundjob_keeps_its_spec_status_and_only_its_bgjob_annotations() -> None:
    body = bgjob()
    body["metadata"]["labels"] = {"app.kubernetes.io/part-of": "shop", "tenant/pad": "y" * 63}
    body["metadata"]["annotations"] = {
        RUN_NOW_ANNOTATION: "2026-11-23",
        "kubectl.kubernetes.io/last-applied-configuration": BIG,
    }
    body["status"] = {"state": "Running"}
    store = Store()
    store.put_bgjob(body)
    kept = store.bgjob((NS, "solo"))
    assert kept is not None
    assert kept["metadata"]["annotations"] == {RUN_NOW_ANNOTATION: "2026-11-23"}
    assert kept["metadata"]["labels"] == {"app.kubernetes.io/part-of": "shop"}
    assert kept["spec"] == body["spec"] and kept["status"] == {"state": "Running"}
    assert trim(kept) == kept


def test_trimming_a_trimmed_child_changes_nothing() -> None:
    once = trim(worker(tenant_env=BIG), "Deployment", "apps/v1")
    assert trim(once, "Deployment", "apps/v1") == once


# --- children held aside ----------------------------------------------------------------


def orphan(i: int, namespace: str = "evil", owner_uid: str | None = None) -> dict[str, Any]:
    body = owned("Deployment", f"d{i}", owner_uid=owner_uid or f"nobody-{i}")
    body["metadata"]["namespace"] = namespace
    return body


def test_ten_thousand_orphans_in_one_namespace_hold_the_bound_and_evict_no_other() -> None:
    store = Store(max_pending=100)
    store.put_child(orphan(0, "good", owner_uid="uid-late"), "Deployment", "apps/v1")
    for i in range(10_000):
        store.put_child(orphan(i), "Deployment", "apps/v1")
    assert store.pending() == 100 + 1
    # The oldest went first: the newest hundred are the ones held.
    late = bgjob("late", uid="uid-late")
    late["metadata"]["namespace"] = "good"
    store.put_bgjob(late)
    assert set(store.children(("good", "late"))) == {("Deployment", "d0")}
    assert store.pending() == 100
    newest = bgjob("new", uid="nobody-9999")
    newest["metadata"]["namespace"] = "evil"
    store.put_bgjob(newest)
    assert set(store.children(("evil", "new"))) == {("Deployment", "d9999")}
    oldest = bgjob("old", uid="nobody-0")
    oldest["metadata"]["namespace"] = "evil"
    store.put_bgjob(oldest)
    assert store.children(("evil", "old")) == {}


def test_a_child_held_aside_is_dropped_after_its_time() -> None:
    now = [0.0]
    store = Store(pending_seconds=60, clock=lambda: now[0])
    store.put_child(orphan(1, NS, owner_uid=UID), "Deployment", "apps/v1")
    now[0] = 59.0
    assert store.pending() == 1
    now[0] = 61.0
    assert store.pending() == 0
    store.put_bgjob(bgjob())
    assert store.children((NS, "solo")) == {}


# --- memory: a figure a user would notice ---------------------------------------------


def test_two_thousand_children_with_100_kb_env_values_hold_under_10_kb_each() -> None:
    from benchmarks.store_memory import held_bytes_per_child

    assert held_bytes_per_child(children=2_000, env_bytes=100_000) < 10_000
