"""Pure admission rules: the cron dialect, schedules that never fire, RFC 3339 times,
the pod template schema. Table tests; the e2e corpus holds the API server to them."""

from __future__ import annotations

from typing import Any

import pytest
from specs import body

from bgjob.api.cron import schedule_never_fires, schedule_problem, valid_cron
from bgjob.api.models import INT32_MAX, InvalidSpec, parse
from bgjob.api.schema import errors, podspec_schema

CRONS = [
    # (expression, what robfig/cron's ParseStandard and this dialect say)
    ("0 3 * * *", True),
    ("*/5 * * * *", True),
    ("0 0-6,22 * JAN-mar Mon-FRI", True),
    ("5/10 * * * *", True),
    ("59 23 31 12 6", True),
    ("@yearly", True),
    ("@annually", True),
    ("@monthly", True),
    ("@weekly", True),
    ("@daily", True),
    ("@midnight", True),
    ("@hourly", True),
    ("@every 90s", False),  # next time from the CronJob's history: not computable
    ("@every 1h30m", False),
    ("\t0 3 * * *  ", True),
    ("0 3 * *", False),
    ("0 0 3 * * *", False),
    ("0 0 L * *", False),
    ("0 0 * * 5L", False),
    ("0 0 * * 1#2", False),
    ("0 0 15W * *", False),
    ("H 3 * * *", False),
    ("0 3 ? * *", False),
    ("TZ=UTC 0 3 * * *", False),
    ("CRON_TZ=UTC 0 3 * * *", False),
    ("60 * * * *", False),
    ("0 24 * * *", False),
    ("0 0 0 * *", False),
    ("0 0 32 * *", False),
    ("0 0 1 13 *", False),
    ("0 0 * * 7", False),
    ("*/0 * * * *", False),
    ("@every", False),
    ("@every 1d", False),
    (" @daily", False),
    ("@reboot", False),
    ("", False),
    ("0 3 * * *\n", True),  # Go's strings.Fields: a trailing newline is whitespace
]


@pytest.mark.parametrize(("cron", "valid"), CRONS, ids=[repr(c) for c, _ in CRONS])
def test_cron_follows_the_cronjob_controller_dialect(cron: str, valid: bool) -> None:
    assert valid_cron(cron) is valid


NEVER = [
    ("0 0 31 2 *", True),
    ("0 0 30 2 *", True),
    ("0 0 31 4,6,9,11 *", True),
    ("0 0 29 2 *", False),  # leap years
    ("0 0 31 2 1", False),  # day-of-month OR day-of-week: every Monday in February
    ("0 0 31 1-2 *", False),
    ("0 0 30-31 2 *", True),
    ("0 0 5-3 * *", True),  # an empty range: the CronJob controller rejects it
    ("0 0 31 */2 *", False),
    ("0 3 * * *", False),
]


@pytest.mark.parametrize(("cron", "never"), NEVER)
def test_a_schedule_that_never_fires_is_recognised(cron: str, never: bool) -> None:
    assert schedule_never_fires(cron) is never
    assert (schedule_problem(cron) is not None) is never


def test_an_invalid_cron_is_a_problem_too() -> None:
    assert schedule_problem("0 0 L * *") is not None


def once(at: Any) -> dict[str, Any]:
    return body(trigger={"once": {"at": at}})


@pytest.mark.parametrize(
    ("at", "ok"),
    [
        ("2026-12-01T03:00:00Z", True),
        ("2026-12-01T04:00:00+01:00", True),
        ("2026-12-01T03:00:00.5Z", True),
        ("9998-12-31T23:59:59Z", True),
        ("9999-01-01T00:00:00Z", False),
        ("9998-12-31T23:30:00-01:00", False),
        ("2026-12-01T03:00:00", False),
        ("2026-12-01", False),
        ("2026-02-30T00:00:00Z", False),
        ("0001-01-01T00:30:00+01:00", False),
        ("2026-12-01T03:00:00Z\n", False),
        (1767225600, False),
    ],
)
def test_once_at_is_an_rfc3339_time_with_an_offset_before_9999(at: Any, ok: bool) -> None:
    if ok:
        assert parse(once(at)).spec.trigger.once.at.tzinfo is not None  # type: ignore[union-attr]
    else:
        with pytest.raises(InvalidSpec, match=r"spec\.trigger\.once\.at"):
            parse(once(at))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("concurrency", INT32_MAX + 1),
        ("concurrency", "2"),
        ("concurrency", 2.0),
        ("suspend", "true"),
        ("suspend", 1),
    ],
)
def test_no_coercion_and_int32_bounds(field: str, value: Any) -> None:
    with pytest.raises(InvalidSpec, match=rf"spec\.{field}"):
        parse(body(**{field: value}))


def test_int32_max_concurrency_is_admitted() -> None:
    assert parse(body(concurrency=INT32_MAX)).spec.concurrency == INT32_MAX


SCHEMA = podspec_schema()


@pytest.mark.parametrize(
    ("overlay", "where"),
    [
        ({"containers": "worker"}, ".containers"),
        ({"containers": [{"image": "x"}]}, ".containers[0].name"),
        ({"containers": [{"name": "a"}, {"name": "a"}]}, ".containers[1]"),
        ({"tolerations": [{"effect": "Often"}]}, ".tolerations[0].effect"),
        ({"nodeSelector": {"a": 1}}, ".nodeSelector.a"),
        ({"replicas": 2}, ".replicas"),
        ({"hostNetwork": "yes"}, ".hostNetwork"),
        ({"overhead": {"cpu": 0.5}}, ".overhead.cpu"),
    ],
)
def test_the_pod_template_schema_names_the_bad_field(overlay: dict[str, Any], where: str) -> None:
    assert [path for path, _ in errors(SCHEMA, overlay)][:1] == [where]


def test_a_realistic_overlay_is_clean() -> None:
    overlay = {
        "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}
                    ]
                }
            }
        },
        "volumes": [{"name": "c", "configMap": {"name": "cfg"}}, {"name": "e", "emptyDir": {}}],
        "containers": [{"name": "worker", "volumeMounts": [{"name": "c", "mountPath": "/c"}]}],
        "imagePullSecrets": [{"name": "regcred"}],
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
    }
    assert errors(SCHEMA, overlay) == []
    assert parse(body(template={"spec": overlay})).spec.template is not None


def test_the_pod_template_schema_is_the_real_podspec() -> None:
    containers = SCHEMA["properties"]["containers"]
    assert containers["type"] == "array"
    assert containers["x-kubernetes-list-type"] == "map"
    assert containers["items"]["required"] == ["name"]
    assert "required" not in SCHEMA  # an overlay: containers may be left out
