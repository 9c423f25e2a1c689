"""Bad input: rejected at admission with the field named, or Degraded with a reason."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.support import Kubectl, bgjob, condition, events, eventually

REJECTED: list[tuple[str, dict[str, Any], str]] = [
    ("no-trigger", {"trigger": {}}, "spec.trigger"),
    (
        "two-triggers",
        {"trigger": {"continuous": {}, "once": {}}},
        "spec.trigger",
    ),
    ("zero-concurrency", {"trigger": {"continuous": {}}, "concurrency": 0}, "spec.concurrency"),
    (
        "singleton-concurrency",
        {"trigger": {"continuous": {}}, "singleton": True, "concurrency": 3},
        "spec.concurrency",
    ),
    ("overlap-continuous", {"trigger": {"continuous": {}}, "overlap": "Allow"}, "spec.overlap"),
    (
        "short-cron",
        {"trigger": {"schedule": {"cron": "0 3 * *"}}},
        "spec.trigger.schedule.cron",
    ),
    (
        "negative-grace",
        {"trigger": {"continuous": {}}, "shutdown": {"gracePeriodSeconds": -1}},
        "spec.shutdown.gracePeriodSeconds",
    ),
    (
        "at-and-delay",
        {"trigger": {"once": {"at": "2030-01-01T00:00:00Z", "delaySeconds": 5}}},
        "spec.trigger.once.delaySeconds",
    ),
    (
        "two-backends",
        {
            "trigger": {
                "queue": {
                    "redis": {"url": "redis://h:6379", "list": "a"},
                    "rabbitmq": {"url": "amqp://h:5672", "queue": "a"},
                }
            }
        },
        "spec.trigger.queue",
    ),
    (
        "rq-duplicate-queues",
        {"trigger": {"queue": {"rq": {"url": "redis://h:6379/0", "queues": ["a", "a"]}}}},
        "spec.trigger.queue.rq.queues",
    ),
    (
        "rq-password-in-url",
        {"trigger": {"queue": {"rq": {"url": "redis://:hunter2@h:6379", "queues": ["a"]}}}},
        "spec.trigger.queue.rq.url",
    ),
    (
        "rq-amqp-url",
        {"trigger": {"queue": {"rq": {"url": "amqp://h:5672", "queues": ["a"]}}}},
        "spec.trigger.queue.rq.url",
    ),
    (
        "celery-bad-queue-name",
        {"trigger": {"queue": {"celery": {"url": "redis://h:6379/0", "queue": "a b"}}}},
        "spec.trigger.queue.celery.queue",
    ),
    (
        "password-in-url",
        {"trigger": {"queue": {"redis": {"url": "redis://:hunter2@h:6379", "list": "a"}}}},
        "spec.trigger.queue.redis.url",
    ),
    (
        "min-above-max",
        {
            "trigger": {"queue": {"redis": {"url": "redis://h", "list": "a"}, "minReplicas": 3}},
            "concurrency": 2,
        },
        "spec.trigger.queue.minReplicas",
    ),
    ("unknown-field", {"trigger": {"continuous": {}}, "replicas": 3}, "replicas"),
    ("no-image", {"trigger": {"continuous": {}}, "image": ""}, "spec.image"),
]


@pytest.mark.parametrize(("name", "spec", "field"), REJECTED, ids=[r[0] for r in REJECTED])
def test_invalid_backgroundjobs_are_rejected_naming_the_field(
    kubectl: Kubectl, ns: str, name: str, spec: dict[str, Any], field: str
) -> None:
    result = kubectl.try_apply(bgjob(name, spec), ns)
    assert result.returncode != 0, f"{name} was accepted"
    assert field in result.stderr, result.stderr
    assert kubectl.get("bgj", name, ns) is None


def test_a_name_too_long_for_its_children_is_rejected(kubectl: Kubectl, ns: str) -> None:
    result = kubectl.try_apply(bgjob("x" * 53, {"trigger": {"continuous": {}}}), ns)
    assert result.returncode != 0
    assert "metadata.name" in result.stderr


def test_an_unknown_time_zone_is_degraded_and_stalled(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(
        bgjob(
            "martian", {"trigger": {"schedule": {"cron": "0 3 * * *", "timeZone": "Mars/Olympus"}}}
        ),
        ns,
    )
    kubectl.wait("bgj/martian", "condition=Degraded", ns)
    bgj = kubectl.get("bgj", "martian", ns)
    assert bgj["status"]["state"] == "Degraded"  # type: ignore[index]
    degraded = condition(bgj, "Degraded")
    assert degraded["reason"] == "InvalidTimeZone"  # type: ignore[index]
    assert "spec.trigger.schedule.timeZone" in degraded["message"]  # type: ignore[index]
    assert condition(bgj, "Stalled")["status"] == "True"  # type: ignore[index]
    assert condition(bgj, "Ready")["status"] == "False"  # type: ignore[index]
    assert kubectl.get("cronjob", "martian", ns) is None
    assert any(e["reason"] == "InvalidTimeZone" for e in events(kubectl, ns, "martian"))

    # Fixing the spec recovers by itself.
    kubectl.run(
        "patch",
        "bgj",
        "martian",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec":{"trigger":{"schedule":{"timeZone":"Europe/Madrid"}}}}',
    )
    kubectl.wait("bgj/martian", "condition=Ready", ns)
    assert kubectl.get("cronjob", "martian", ns)["spec"]["timeZone"] == "Europe/Madrid"  # type: ignore[index]


def test_a_schedule_that_never_fires_is_degraded_not_a_loop(kubectl: Kubectl, ns: str) -> None:
    # Admission accepts 31 February (a regular expression cannot count days); the
    # CronJob would never start a run. The user sees why instead of waiting forever.
    kubectl.apply(bgjob("leap", {"trigger": {"schedule": {"cron": "0 0 31 2 *"}}}), ns)
    kubectl.wait("bgj/leap", "condition=Degraded", ns)
    bgj = kubectl.get("bgj", "leap", ns)
    degraded = condition(bgj, "Degraded")
    assert degraded["reason"] == "InvalidSchedule"  # type: ignore[index]
    assert "spec.trigger.schedule.cron" in degraded["message"]  # type: ignore[index]
    assert condition(bgj, "Stalled")["status"] == "True"  # type: ignore[index]
    assert kubectl.get("cronjob", "leap", ns) is None
    assert any(e["reason"] == "InvalidSchedule" for e in events(kubectl, ns, "leap"))


def test_a_pod_template_the_api_server_rejects_is_degraded(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(
        bgjob(
            "broken",
            {
                "trigger": {"continuous": {}},
                "template": {"spec": {"volumes": [{"name": "Not_A_DNS_Label", "emptyDir": {}}]}},
            },
        ),
        ns,
    )
    kubectl.wait("bgj/broken", "condition=Degraded", ns)
    degraded = condition(kubectl.get("bgj", "broken", ns), "Degraded")
    assert degraded["reason"] == "ApplyFailed"  # type: ignore[index]
    assert "volumes[0].name" in degraded["message"]  # type: ignore[index]


def test_a_name_taken_by_someone_elses_object_is_left_alone(kubectl: Kubectl, ns: str) -> None:
    # The child is created by an apply that only creates: on a name already taken it
    # fails, and the object there, not ours, is never written to.
    theirs = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "taken"},
        "spec": {
            "schedule": "5 4 * * *",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "theirs", "image": "busybox:1.36"}],
                        }
                    }
                }
            },
        },
    }
    kubectl.apply(theirs, ns)
    kubectl.apply(bgjob("taken", {"trigger": {"schedule": {"cron": "0 3 * * *"}}}), ns)

    def conflict() -> dict[str, Any] | None:
        ready = condition(kubectl.get("bgj", "taken", ns), "Ready")
        return ready if ready and ready.get("reason") == "NameConflict" else None

    ready = eventually(conflict)
    assert ready["status"] == "False"
    assert "CronJob named taken" in ready["message"]
    cronjob = kubectl.get("cronjob", "taken", ns)
    assert cronjob is not None
    assert cronjob["spec"]["schedule"] == "5 4 * * *"
    assert not cronjob["metadata"].get("ownerReferences")
