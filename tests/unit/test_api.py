"""The API contract (docs/api.md): defaults, validation messages, and the generated CRD."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import pytest
import yaml
from specs import QUEUE, SCHEDULE, TRIGGERS, bgjob, body, queue

from bgjob.api.crd import crd, crd_yaml, openapi_schema
from bgjob.api.models import InvalidSpec, parse

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = "bgjob.dev_backgroundjobs.yaml"


# --- defaults -------------------------------------------------------------------------

DEFAULTS = [
    # (trigger, attribute path on the parsed spec, contract default)
    ("continuous", "concurrency", 1),
    ("continuous", "singleton", False),
    ("continuous", "suspend", False),
    ("continuous", "shutdown.grace_period_seconds", 30),
    ("continuous", "shutdown.pre_stop_sleep_seconds", 0),
    ("once", "run.backoff_limit", 3),
    ("once", "run.active_deadline_seconds", None),
    ("once", "run.ttl_seconds_after_finished", None),
    ("schedule", "history.successful_runs", 3),
    ("schedule", "history.failed_runs", 1),
    ("schedule", "effective_overlap", "Forbid"),
    ("schedule", "trigger.schedule.time_zone", "UTC"),
    ("schedule", "trigger.schedule.starting_deadline_seconds", None),
    ("once", "trigger.once.at", None),
    ("once", "trigger.once.delay_seconds", None),
    ("queue", "trigger.queue.target_per_replica", 5),
    ("queue", "trigger.queue.activation_threshold", 0),
    ("queue", "trigger.queue.min_replicas", 0),
    ("queue", "trigger.queue.cooldown_seconds", 60),
]


@pytest.mark.parametrize(("trigger", "attribute", "default"), DEFAULTS)
def test_an_omitted_field_takes_the_contract_default(
    trigger: str, attribute: str, default: Any
) -> None:
    spec = bgjob(trigger=TRIGGERS[trigger]).spec
    assert operator.attrgetter(attribute)(spec) == default


def test_queue_backlog_is_polled_at_least_every_five_seconds_by_default() -> None:
    interval = bgjob(trigger=QUEUE).spec.trigger.queue.polling_interval_seconds
    assert 1 <= interval <= 5


def _schema_node(path: str) -> dict[str, Any]:
    node = openapi_schema()
    for name in path.split("."):
        node = node["properties"][name]
    return node


SCHEMA_DEFAULTS = [
    # The API server fills these in at admission, so `kubectl get -o yaml` shows them.
    ("spec.concurrency", 1),
    ("spec.singleton", False),
    ("spec.suspend", False),
    ("spec.shutdown", {}),
    ("spec.shutdown.gracePeriodSeconds", 30),
    ("spec.shutdown.preStopSleepSeconds", 0),
    ("spec.run", {}),
    ("spec.run.backoffLimit", 3),
    ("spec.history", {}),
    ("spec.history.successfulRuns", 3),
    ("spec.history.failedRuns", 1),
    ("spec.trigger.schedule.timeZone", "UTC"),
    ("spec.trigger.queue.targetPerReplica", 5),
    ("spec.trigger.queue.activationThreshold", 0),
    ("spec.trigger.queue.minReplicas", 0),
]


@pytest.mark.parametrize(("path", "default"), SCHEMA_DEFAULTS)
def test_the_crd_schema_defaults_match_the_contract(path: str, default: Any) -> None:
    assert _schema_node(path)["default"] == default


def test_overlap_has_no_schema_default_so_non_schedule_jobs_stay_admissible() -> None:
    # A default of Forbid would make every continuous/once/queue object break the
    # "overlap only with schedule" rule.
    assert "default" not in _schema_node("spec.overlap")


# --- validation -----------------------------------------------------------------------

REDIS = {"url": "redis://redis.shop:6379/0", "list": "jobs"}
URL_FROM = {"secretKeyRef": {"name": "redis", "key": "url"}}

REJECTED = [
    # (id, body overrides, the field the message must name)
    ("no trigger", {"trigger": {}}, "spec.trigger"),
    ("two triggers", {"trigger": {"continuous": {}, "once": {}}}, "spec.trigger"),
    ("no queue backend", {"trigger": {"queue": {}}}, "spec.trigger.queue"),
    (
        "two queue backends",
        {"trigger": {"queue": {"redis": REDIS, "rabbitmq": {"url": "amqp://mq", "queue": "q"}}}},
        "spec.trigger.queue",
    ),
    ("concurrency zero", {"concurrency": 0}, "spec.concurrency"),
    ("concurrency negative", {"concurrency": -3}, "spec.concurrency"),
    ("singleton with concurrency 2", {"singleton": True, "concurrency": 2}, "spec.concurrency"),
    ("overlap on continuous", {"overlap": "Allow"}, "spec.overlap"),
    ("overlap on once", {"trigger": {"once": {}}, "overlap": "Replace"}, "spec.overlap"),
    ("overlap not a policy", {"trigger": SCHEDULE, "overlap": "Sometimes"}, "spec.overlap"),
    ("cron with four fields", {"trigger": {"schedule": {"cron": "0 3 * *"}}}, "cron"),
    ("cron with six fields", {"trigger": {"schedule": {"cron": "0 0 3 * * *"}}}, "cron"),
    ("cron missing", {"trigger": {"schedule": {}}}, "spec.trigger.schedule.cron"),
    ("negative grace period", {"shutdown": {"gracePeriodSeconds": -1}}, "gracePeriodSeconds"),
    (
        "at and delaySeconds",
        {"trigger": {"once": {"at": "2026-12-01T03:00:00Z", "delaySeconds": 300}}},
        "spec.trigger.once",
    ),
    (
        "redis url with password",
        {"trigger": {"queue": {"redis": {"url": "redis://app:s3cret@redis:6379/0", "list": "l"}}}},
        "spec.trigger.queue.redis.url",
    ),
    (
        "redis url with password only",
        {"trigger": {"queue": {"redis": {"url": "redis://:s3cret@redis:6379/0", "list": "l"}}}},
        "spec.trigger.queue.redis.url",
    ),
    (
        "amqp url with password",
        {"trigger": {"queue": {"rabbitmq": {"url": "amqp://guest:guest@mq/", "queue": "q"}}}},
        "spec.trigger.queue.rabbitmq.url",
    ),
    (
        "url and urlFrom",
        {"trigger": {"queue": {"redis": {**REDIS, "urlFrom": URL_FROM}}}},
        "spec.trigger.queue.redis",
    ),
    (
        "neither url nor urlFrom",
        {"trigger": {"queue": {"redis": {"list": "jobs"}}}},
        "spec.trigger.queue.redis",
    ),
    (
        "minReplicas above concurrency",
        {"trigger": queue(minReplicas=3), "concurrency": 2},
        "spec.trigger.queue.minReplicas",
    ),
    ("unknown field", {"replicas": 3}, "spec.replicas"),
    ("unknown nested field", {"shutdown": {"timeoutSeconds": 5}}, "spec.shutdown.timeoutSeconds"),
    ("image missing", {"image": None}, "spec.image"),
]


@pytest.mark.parametrize(("overrides", "field"), [pytest.param(o, f, id=i) for i, o, f in REJECTED])
def test_an_invalid_spec_is_rejected_with_a_message_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    doc = body()
    doc["spec"].update(overrides)
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    with pytest.raises(InvalidSpec) as error:
        parse(doc)
    assert field in str(error.value)


def test_a_name_longer_than_52_characters_is_rejected_naming_metadata_name() -> None:
    with pytest.raises(InvalidSpec, match=r"metadata\.name"):
        parse(body("a" * 53))


def test_every_problem_of_an_object_is_reported_at_once() -> None:
    doc = body(concurrency=0, shutdown={"gracePeriodSeconds": -5})
    with pytest.raises(InvalidSpec) as error:
        parse(doc)
    assert "spec.concurrency" in str(error.value)
    assert "spec.shutdown.gracePeriodSeconds" in str(error.value)


ACCEPTED = [
    ("singleton with concurrency 1", {"singleton": True, "concurrency": 1}),
    ("overlap on schedule", {"trigger": SCHEDULE, "overlap": "Replace"}),
    ("cron with extra spaces", {"trigger": {"schedule": {"cron": " 0  3 * * 1-5 "}}}),
    ("once at a time", {"trigger": {"once": {"at": "2026-12-01T03:00:00Z"}}}),
    ("once after a delay", {"trigger": {"once": {"delaySeconds": 300}}}),
    ("zero grace period", {"shutdown": {"gracePeriodSeconds": 0}}),
    (
        "url with a user and no password",
        {"trigger": queue(redis={**REDIS, "url": "redis://app@r"})},
    ),
    (
        "credentials from a Secret",
        {"trigger": {"queue": {"redis": {"urlFrom": URL_FROM, "list": "l"}}}},
    ),
    ("minReplicas equal to concurrency", {"trigger": queue(minReplicas=4), "concurrency": 4}),
    ("rabbitmq", {"trigger": {"queue": {"rabbitmq": {"url": "amqp://mq:5672/%2f", "queue": "q"}}}}),
]


@pytest.mark.parametrize("overrides", [pytest.param(o, id=i) for i, o in ACCEPTED])
def test_a_valid_spec_is_accepted(overrides: dict[str, Any]) -> None:
    doc = body()
    doc["spec"].update(overrides)
    parse(doc)


def test_a_name_of_exactly_52_characters_is_accepted() -> None:
    assert parse(body("a" * 52)).metadata.name == "a" * 52


# --- the generated CRD ----------------------------------------------------------------


def test_the_committed_crd_is_exactly_what_the_models_generate() -> None:
    assert (ROOT / "crds" / CRD_FILE).read_text() == crd_yaml()


def test_the_helm_chart_ships_the_same_crd_bytes() -> None:
    # templates/crds.yaml renders this copy (tests/unit/test_chart.py checks the rendering).
    chart_crd = ROOT / "charts" / "bgjob-operator" / "files" / "crds" / CRD_FILE
    assert chart_crd.read_text() == crd_yaml()


def test_the_crd_yaml_parses_back_to_the_crd_object() -> None:
    assert yaml.safe_load(crd_yaml()) == crd()


def test_the_crd_names_follow_the_contract() -> None:
    spec = crd()["spec"]
    assert spec["group"] == "bgjob.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "BackgroundJob"
    assert spec["names"]["plural"] == "backgroundjobs"
    assert spec["names"]["singular"] == "backgroundjob"
    assert set(spec["names"]["shortNames"]) == {"bgj", "bgjob"}
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def _walk(node: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node with its path."""
    if not isinstance(node, dict):
        return []
    found = [(where or "<root>", node)]
    for name, sub in (node.get("properties") or {}).items():
        found += _walk(sub, f"{where}.{name}")
    if "items" in node:
        found += _walk(node["items"], f"{where}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{where}{{}}")
    return found


SCHEMA_NODES = _walk(openapi_schema())


def test_the_schema_has_no_references_or_combinators() -> None:
    bad = [
        (where, key)
        for where, node in SCHEMA_NODES
        for key in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title")
        if key in node
    ]
    assert bad == []


def test_no_schema_node_has_both_properties_and_additional_properties() -> None:
    bad = [w for w, node in SCHEMA_NODES if "properties" in node and "additionalProperties" in node]
    assert bad == []


def test_every_schema_node_has_a_type() -> None:
    untyped = [
        where
        for where, node in SCHEMA_NODES
        if "type" not in node
        and not node.get("x-kubernetes-int-or-string")
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert untyped == []


def test_every_property_has_a_description_for_kubectl_explain() -> None:
    undocumented = [
        where
        for where, node in SCHEMA_NODES
        # The API server documents metadata itself (ObjectMeta), for every CRD.
        if where != ".metadata"
        and where != "<root>"
        and not where.endswith(("[]", "{}"))
        and not node.get("description")
    ]
    assert undocumented == []


def test_explain_of_the_queue_trigger_reads_like_documentation() -> None:
    queue_node = _schema_node("spec.trigger.queue")
    assert queue_node["description"]
    assert set(queue_node["properties"]) >= {
        "redis",
        "rabbitmq",
        "targetPerReplica",
        "activationThreshold",
        "minReplicas",
        "pollingIntervalSeconds",
        "cooldownSeconds",
    }


RULE_NODES = [
    # (schema node, a word its CEL rules must mention)
    ("<root>", "metadata.name"),
    (".spec", "singleton"),
    (".spec", "overlap"),
    (".spec", "minReplicas"),
    (".spec.trigger", "continuous"),
    (".spec.trigger.schedule", "cron"),
    (".spec.trigger.once", "delaySeconds"),
    (".spec.trigger.queue", "rabbitmq"),
    (".spec.trigger.queue.redis", "urlFrom"),
    (".spec.trigger.queue.rabbitmq", "urlFrom"),
]


@pytest.mark.parametrize(("where", "word"), RULE_NODES)
def test_cross_field_rules_are_enforced_at_admission_with_cel(where: str, word: str) -> None:
    node = dict(SCHEMA_NODES)[where]
    rules = node.get("x-kubernetes-validations") or []
    assert any(word in rule["rule"] for rule in rules), rules
    assert all(rule["message"] for rule in rules)


def test_conditions_merge_by_type_under_server_side_apply() -> None:
    conditions = _schema_node("status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_kubectl_get_answers_is_it_healthy_first_and_wide_adds_counts() -> None:
    (version,) = crd()["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    ready = '.status.conditions[?(@.type=="Ready")]'
    default = [(c["name"], c["jsonPath"]) for c in columns if not c.get("priority")]
    assert default == [
        ("Ready", f"{ready}.status"),
        ("State", ".status.state"),
        ("Reason", f"{ready}.reason"),
        ("Trigger", ".status.trigger"),
        ("Last Run", ".status.lastRun.result"),
        ("Next Run", ".status.nextRunTime"),
        ("Age", ".metadata.creationTimestamp"),
    ]
    wide = {c["name"]: c["jsonPath"] for c in columns if c.get("priority") == 1}
    assert wide == {
        "Desired": ".status.desiredReplicas",
        "Ready Pods": ".status.readyReplicas",
        "Queue": ".status.queueLength",
        "Message": f"{ready}.message",
    }


def test_a_management_url_with_credentials_is_rejected() -> None:
    from bgjob.api.models import InvalidSpec, parse

    spec = {
        "image": "worker:1",
        "trigger": {
            "queue": {
                "rabbitmq": {
                    "url": "amqp://rabbit:5672/%2F",
                    "queue": "jobs",
                    "managementUrl": "http://admin:s3cret@rabbit:15672",
                }
            }
        },
    }
    with pytest.raises(InvalidSpec, match=r"spec\.trigger\.queue\.rabbitmq\.managementUrl"):
        parse({"metadata": {"name": "x"}, "spec": spec})
    rabbitmq = spec["trigger"]["queue"]["rabbitmq"]  # type: ignore[index]
    rabbitmq["managementUrl"] = "https://rabbit:15671"
    assert parse({"metadata": {"name": "x"}, "spec": spec}).spec.trigger.queue is not None
    # Plain http carries the credentials in clear text: only when the spec says so.
    rabbitmq["managementUrl"] = "http://rabbit:15672"
    with pytest.raises(InvalidSpec, match=r"managementUrl: must be https"):
        parse({"metadata": {"name": "x"}, "spec": spec})
    rabbitmq["allowInsecureManagement"] = True
    assert parse({"metadata": {"name": "x"}, "spec": spec}).spec.trigger.queue is not None
