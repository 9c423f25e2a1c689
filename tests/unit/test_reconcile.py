"""When a child must be written again: `covers` and `needs_apply`, pure."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from specs import bgjob

from bgjob import workloads
from bgjob.reconcile import covers, needs_apply, preflight

COVERS = [
    # (id, observed, desired, covered)
    ("equal scalars", 3, 3, True),
    ("different scalars", 2, 3, False),
    ("missing scalar", None, 3, False),
    ("false is not missing", None, False, False),
    ("extra keys ignored", {"a": 1, "b": 2}, {"a": 1}, True),
    ("missing key", {"b": 2}, {"a": 1}, False),
    ("nested difference", {"a": {"b": 1, "c": 2}}, {"a": {"b": 2}}, False),
    ("nested extra keys ignored", {"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, True),
    ("empty map matches absent", None, {}, True),
    ("empty map matches empty", {}, {}, True),
    ("empty map does not match a filled one", {"x": 1}, {}, False),
    ("empty list matches absent", None, [], True),
    ("empty list does not match a filled one", [1], [], False),
    ("lists item by item", [{"n": 1, "x": 0}, {"n": 2}], [{"n": 1}, {"n": 2}], True),
    ("list order matters", [{"n": 2}, {"n": 1}], [{"n": 1}, {"n": 2}], False),
    ("list length matters", [{"n": 1}, {"n": 2}], [{"n": 1}], False),
    ("a map is not a list", {"n": 1}, [{"n": 1}], False),
    ("a scalar is not a map", "x", {"a": 1}, False),
]


@pytest.mark.parametrize(
    ("observed", "desired", "covered"), [pytest.param(o, d, c, id=i) for i, o, d, c in COVERS]
)
def test_covers_compares_only_the_fields_we_want(
    observed: Any, desired: Any, covered: bool
) -> None:
    assert covers(observed, desired) is covered


def desired(**spec: Any) -> dict[str, Any]:
    manifest = workloads.workload(bgjob(concurrency=2, **spec))
    assert manifest is not None
    return manifest


def as_served(manifest: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server returns it: our fields plus defaults and status."""
    served = copy.deepcopy(manifest)
    served["metadata"].update(
        resourceVersion="4711",
        generation=1,
        uid="child-uid",
        creationTimestamp="2026-03-01T12:00:01Z",
        managedFields=[{"manager": "bgjob-operator", "operation": "Apply"}],
    )
    spec = served["spec"]
    spec.update(revisionHistoryLimit=10, progressDeadlineSeconds=600)
    spec["strategy"]["rollingUpdate"] = {"maxSurge": "25%", "maxUnavailable": "25%"}
    pod = spec["template"]
    pod["metadata"]["creationTimestamp"] = None
    pod["spec"].update(dnsPolicy="ClusterFirst", schedulerName="default-scheduler")
    for container in pod["spec"]["containers"]:
        container.update(
            imagePullPolicy="IfNotPresent",
            terminationMessagePath="/dev/termination-log",
            terminationMessagePolicy="File",
        )
        container.setdefault("resources", {})
    served["status"] = {"replicas": 2, "readyReplicas": 2, "observedGeneration": 1}
    return served


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for part in parents:
            obj = obj[int(part)] if isinstance(obj, list) else obj[part]
        obj[last] = value

    return edit


def _drop_label(obj: dict[str, Any]) -> None:
    del obj["metadata"]["labels"]["app.kubernetes.io/managed-by"]


def _stale_hash(obj: dict[str, Any]) -> None:
    obj["metadata"]["annotations"]["bgjob.dev/spec-hash"] = "0123456789abcdef"


NEEDS_APPLY = [
    # (id, edit of the served object, must apply)
    ("unchanged", lambda obj: None, False),
    ("a label added by someone else", _set("metadata.labels.team", "media"), False),
    ("an annotation added by someone else", _set("metadata.annotations.note", "x"), False),
    ("replicas edited by hand", _set("spec.replicas", 5), True),
    ("image edited by hand", _set("spec.template.spec.containers.0.image", "evil:1"), True),
    (
        "grace period edited by hand",
        _set("spec.template.spec.terminationGracePeriodSeconds", 1),
        True,
    ),
    ("our label removed by hand", _drop_label, True),
    ("applied from an older spec", _stale_hash, True),
]


@pytest.mark.parametrize(
    ("edit", "must_apply"), [pytest.param(e, m, id=i) for i, e, m in NEEDS_APPLY]
)
def test_needs_apply_only_when_the_child_differs_from_what_we_want(
    edit: Callable[[dict[str, Any]], None], must_apply: bool
) -> None:
    want = desired()
    current = as_served(want)
    edit(current)
    assert needs_apply(current, want) is must_apply


def test_a_missing_child_needs_apply() -> None:
    assert needs_apply(None, desired()) is True


def test_a_child_without_our_hash_needs_apply() -> None:
    want = desired()
    current = as_served(want)
    del current["metadata"]["annotations"]
    assert needs_apply(current, want) is True


def test_a_new_spec_needs_apply_even_if_the_child_still_matches_the_old_one() -> None:
    old = desired(image="worker:1")
    assert needs_apply(as_served(old), desired(image="worker:2")) is True


@pytest.mark.parametrize(
    ("ours", "served"),
    [
        pytest.param(1, "1", id="integer cpu comes back as a string"),
        pytest.param("0.5", "500m", id="decimal cpu comes back in millicores"),
        pytest.param("1024Mi", "1Gi", id="memory comes back in its largest exact unit"),
    ],
)
def test_quantities_the_server_canonicalises_need_no_apply(ours: Any, served: str) -> None:
    # The API server stores quantities in canonical form; writing ours again on every
    # reconcile would be a write for nothing.
    resource = "memory" if served.endswith("i") else "cpu"
    want = desired(resources={"requests": {resource: ours}})
    current = as_served(want)
    current["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {resource: served}
    }
    assert needs_apply(current, want) is False


def test_an_empty_string_the_server_drops_is_not_drift() -> None:
    from bgjob.reconcile import covers

    desired = [{"name": "FLAG", "value": ""}]
    assert covers([{"name": "FLAG"}], desired)
    assert not covers([{"name": "FLAG", "value": "on"}], desired)


@pytest.mark.parametrize(
    ("observed", "desired", "covered"),
    [
        pytest.param({"value": "1.0"}, {"value": "1"}, False, id="an env value is text"),
        pytest.param({"replicas": "1.0"}, {"replicas": "1"}, False, id="not a quantity field"),
        pytest.param({"requests": {"cpu": "1000m"}}, {"requests": {"cpu": 1}}, True, id="cpu"),
        pytest.param(
            {"limits": {"memory": "1Gi"}}, {"limits": {"memory": "1024Mi"}}, True, id="mem"
        ),
        pytest.param({"sizeLimit": "1Gi"}, {"sizeLimit": "1024Mi"}, True, id="emptyDir size"),
        pytest.param({"limits": {"cpu": "2"}}, {"limits": {"cpu": "1"}}, False, id="other cpu"),
    ],
)
def test_quantities_compare_as_quantities_only_where_the_field_is_one(
    observed: Any, desired: Any, covered: bool
) -> None:
    assert covers(observed, desired) is covered


def test_an_env_value_edited_from_1_to_1_0_is_put_back() -> None:
    want = desired(env=[{"name": "WORKERS", "value": "1"}])
    current = as_served(want)
    container = current["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [
        {"name": "WORKERS", "value": "1.0"} if e["name"] == "WORKERS" else e
        for e in container["env"]
    ]
    assert needs_apply(current, want) is True


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("0 3 * * *", None),
        ("@hourly", None),
        ("0 0 29 2 *", None),  # a leap day comes
        ("0 0 31 2 *", "InvalidSchedule"),
        ("0 0 30 2 *", "InvalidSchedule"),
        ("0 0 31 4,6 *", "InvalidSchedule"),
        ("0 0 31 2 1", None),  # day of month OR day of week: Mondays come
    ],
)
def test_a_schedule_that_never_fires_is_a_problem_before_anything_is_applied(
    cron: str, reason: str | None
) -> None:
    problem = preflight(bgjob(trigger={"schedule": {"cron": cron}}))
    assert (problem.reason if problem else None) == reason
    if problem is not None:
        assert problem.message.startswith("spec.trigger.schedule.cron: ")
