"""Write tests/corpus/hostile/: manifests a tenant might send, each with the verdict due.

    .venv/bin/python -m tests.corpus.make_hostile

Every file starts with ``# expect: accept`` or ``# expect: reject FIELD`` (FIELD
may be empty when the input is not even YAML). tests/unit/test_hostile_corpus.py
checks ``bgjob-operator render`` against it; tests/e2e/test_zz_hostile_corpus.py
checks ``kubectl apply --dry-run=server`` on a real API server against the same
line, so render and admission agree case by case. The files are committed; this
script documents how they were made.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parent / "hostile"
INT32_MAX = 2**31 - 1
BASE: dict[str, Any] = {
    "apiVersion": "bgjob.dev/v1alpha1",
    "kind": "BackgroundJob",
    "metadata": {"name": "hostile"},
    "spec": {"image": "registry.example.com/worker:1.0", "trigger": {"continuous": {}}},
}
REDIS = {"url": "redis://redis:6379/0", "list": "jobs"}
Case = tuple[str, str, bytes]  # (name, expectation, content)

# rq and celery triggers (and nulls and trailing newlines on every backend): the API
# server's verdict, checked against it by tests/e2e/test_corpus_admission.py.
WORK_QUEUES: list[tuple[str, str, dict[str, Any]]] = [
    ("rq-ok", "accept", {"rq": {"url": "redis://r:6379/0", "queues": ["high", "default"]}}),
    (
        "rq-urlfrom",
        "accept",
        {"rq": {"urlFrom": {"secretKeyRef": {"name": "s", "key": "url"}}, "queues": ["q"]}},
    ),
    (
        "rq-nl-queue",
        "reject spec.trigger.queue.rq.queues",
        {"rq": {"url": "redis://r:6379/0", "queues": ["q\n"]}},
    ),
    (
        "rq-nl-url",
        "reject spec.trigger.queue.rq.url",
        {"rq": {"url": "redis://r:6379/0\n", "queues": ["q"]}},
    ),
    (
        "rq-17",
        "reject spec.trigger.queue.rq.queues",
        {"rq": {"url": "redis://r:6379/0", "queues": [f"q{i}" for i in range(17)]}},
    ),
    (
        "rq-16x253",
        "accept",
        {"rq": {"url": "redis://r:6379/0", "queues": [c * 253 for c in "abcdefghijklmnop"]}},
    ),
    (
        "rq-254",
        "reject spec.trigger.queue.rq.queues",
        {"rq": {"url": "redis://r:6379/0", "queues": ["a" * 254]}},
    ),
    (
        "rq-dup",
        "reject spec.trigger.queue.rq.queues",
        {"rq": {"url": "redis://r:6379/0", "queues": ["a", "b", "a"]}},
    ),
    (
        "rq-lead-neg",
        "reject spec.trigger.queue.rq.scheduleLeadSeconds",
        {"rq": {"url": "redis://r:6379/0", "queues": ["q"], "scheduleLeadSeconds": -1}},
    ),
    (
        "rq-lead-301",
        "reject spec.trigger.queue.rq.scheduleLeadSeconds",
        {"rq": {"url": "redis://r:6379/0", "queues": ["q"], "scheduleLeadSeconds": 301}},
    ),
    (
        "rq-lead-float",
        "accept",
        {"rq": {"url": "redis://r:6379/0", "queues": ["q"], "scheduleLeadSeconds": 5.0}},
    ),
    (
        "rq-lead-float5",
        "reject spec.trigger.queue.rq.scheduleLeadSeconds",
        {"rq": {"url": "redis://r:6379/0", "queues": ["q"], "scheduleLeadSeconds": 5.5}},
    ),
    (
        "rq-lead-str",
        "reject spec.trigger.queue.rq.scheduleLeadSeconds",
        {"rq": {"url": "redis://r:6379/0", "queues": ["q"], "scheduleLeadSeconds": "5"}},
    ),
    (
        "rq-lead-bool",
        "reject spec.trigger.queue.rq.scheduleLeadSeconds",
        {"rq": {"url": "redis://r:6379/0", "queues": ["q"], "scheduleLeadSeconds": True}},
    ),
    (
        "rq-lead-null",
        "accept",
        {"rq": {"url": "redis://r:6379/0", "queues": ["q"], "scheduleLeadSeconds": None}},
    ),
    (
        "rq-pw",
        "reject spec.trigger.queue.rq.url",
        {"rq": {"url": "redis://u:p@r:6379/0", "queues": ["q"]}},
    ),
    (
        "rq-pwq",
        "reject spec.trigger.queue.rq.url",
        {"rq": {"url": "redis://r:6379/0?pass%77ord=x", "queues": ["q"]}},
    ),
    (
        "rq-timeout",
        "reject spec.trigger.queue.rq.url",
        {"rq": {"url": "redis://r:6379/0?socket_timeout=100", "queues": ["q"]}},
    ),
    (
        "rq-amqp",
        "reject spec.trigger.queue.rq.url",
        {"rq": {"url": "amqp://r:5672/", "queues": ["q"]}},
    ),
    (
        "rq-unix",
        "reject spec.trigger.queue.rq.url",
        {"rq": {"url": "unix:///tmp/redis.sock", "queues": ["q"]}},
    ),
    (
        "rq-both",
        "reject spec.trigger.queue.rq",
        {
            "rq": {
                "url": "redis://r:6379/0",
                "urlFrom": {"secretKeyRef": {"name": "s", "key": "url"}},
                "queues": ["q"],
            }
        },
    ),
    ("rq-none", "reject spec.trigger.queue.rq", {"rq": {"queues": ["q"]}}),
    ("rq-noqueues", "reject spec.trigger.queue.rq.queues", {"rq": {"url": "redis://r:6379/0"}}),
    (
        "rq-queues-str",
        "reject spec.trigger.queue.rq.queues",
        {"rq": {"url": "redis://r:6379/0", "queues": "q"}},
    ),
    (
        "rq-queue-int",
        "reject spec.trigger.queue.rq.queues",
        {"rq": {"url": "redis://r:6379/0", "queues": [5]}},
    ),
    (
        "rq-queue-null",
        "reject spec.trigger.queue.rq.queues",
        {"rq": {"url": "redis://r:6379/0", "queues": [None]}},
    ),
    (
        "rq-unknown",
        "reject spec.trigger.queue.rq.keyPrefix",
        {"rq": {"url": "redis://r:6379/0", "queues": ["q"], "keyPrefix": "x"}},
    ),
    (
        "rq-and-redis",
        "reject spec.trigger.queue",
        {
            "rq": {"url": "redis://r:6379/0", "queues": ["q"]},
            "redis": {"url": "redis://r:6379/0", "list": "l"},
        },
    ),
    ("rq-null", "reject spec.trigger.queue", {"rq": None}),
    ("rq-empty", "reject spec.trigger.queue.rq.queues", {"rq": {}}),
    (
        "rq-unicode",
        "reject spec.trigger.queue.rq.queues",
        {"rq": {"url": "redis://r:6379/0", "queues": ["q\u0661"]}},
    ),
    (
        "rq-db-big",
        "reject spec.trigger.queue.rq.url",
        {"rq": {"url": "redis://r:6379/99999999999999999999", "queues": ["q"]}},
    ),
    (
        "rq-port-big",
        "reject spec.trigger.queue.rq.url",
        {"rq": {"url": "redis://r:99999/0", "queues": ["q"]}},
    ),
    ("rq-user", "accept", {"rq": {"url": "redis://token@r:6379/0", "queues": ["q"]}}),
    ("celery-ok", "accept", {"celery": {"url": "redis://r:6379/0"}}),
    ("celery-q", "accept", {"celery": {"url": "redis://r:6379/0", "queue": "celery:x.y-z_1"}}),
    (
        "celery-empty-q",
        "reject spec.trigger.queue.celery.queue",
        {"celery": {"url": "redis://r:6379/0", "queue": ""}},
    ),
    ("celery-null-q", "accept", {"celery": {"url": "redis://r:6379/0", "queue": None}}),
    (
        "celery-nl",
        "reject spec.trigger.queue.celery.queue",
        {"celery": {"url": "redis://r:6379/0", "queue": "celery\n"}},
    ),
    (
        "celery-sep",
        "reject spec.trigger.queue.celery.queue",
        {"celery": {"url": "redis://r:6379/0", "queue": "celery\x06\x163"}},
    ),
    ("celery-amqp", "reject spec.trigger.queue.celery.url", {"celery": {"url": "amqp://r:5672/"}}),
    (
        "celery-queues",
        "reject spec.trigger.queue.celery.queues",
        {"celery": {"url": "redis://r:6379/0", "queues": ["a"]}},
    ),
    ("celery-empty", "reject spec.trigger.queue.celery", {"celery": {}}),
    ("celery-rediss", "accept", {"celery": {"url": "rediss://r:6380/0"}}),
    ("celery-ipv6", "accept", {"celery": {"url": "redis://[::1]:6379/0"}}),
    ("celery-169", "accept", {"celery": {"url": "redis://169.254.169.254:80/0"}}),
    (
        "redis-nl-url",
        "reject spec.trigger.queue.redis.url",
        {"redis": {"url": "redis://r:6379/0\n", "list": "l"}},
    ),
    (
        "redis-poll-null",
        "accept",
        {"redis": {"url": "redis://r:6379/0", "list": "l"}, "pollingIntervalSeconds": None},
    ),
    (
        "rabbit-nl-url",
        "reject spec.trigger.queue.rabbitmq.url",
        {"rabbitmq": {"url": "amqp://r:5672/\n", "queue": "l"}},
    ),
    (
        "rq-nl-url-nopath",
        "reject spec.trigger.queue.rq.url",
        {"rq": {"url": "redis://r:6379\n", "queues": ["q"]}},
    ),
    ("redis-url-null", "reject spec.trigger.queue.redis", {"redis": {"url": None, "list": "l"}}),
    (
        "celery-url-null-from",
        "accept",
        {"celery": {"url": None, "urlFrom": {"secretKeyRef": {"name": "s", "key": "url"}}}},
    ),
    (
        "rq-queues-null",
        "reject spec.trigger.queue.rq.queues",
        {"rq": {"url": "redis://r:6379/0", "queues": None}},
    ),
    (
        "rq-cooldown-null",
        "accept",
        {
            "rq": {"url": "redis://r:6379/0", "queues": ["q"]},
            "cooldownSeconds": None,
            "targetPerReplica": None,
        },
    ),
]


def doc(spec: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out["spec"].update(spec or {})
    out.update(top)
    return out


def at(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the base document with one value set at a dotted path."""
    out = copy.deepcopy(base or BASE)
    node = out
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return out


def dumped(obj: Any) -> bytes:
    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True).encode()


def cases() -> list[Case]:
    out: list[Case] = []

    def add(name: str, expect: str, body: dict[str, Any] | bytes) -> None:
        out.append((name, expect, body if isinstance(body, bytes) else dumped(body)))

    # --- numbers: bounded as the Kubernetes field each becomes ---------------------------
    schedule = doc({"trigger": {"schedule": {"cron": "0 3 * * *"}}})
    queue = doc({"trigger": {"queue": {"redis": REDIS}}})
    numbers = [
        ("spec.concurrency", BASE, 1, INT32_MAX),
        ("spec.shutdown.gracePeriodSeconds", BASE, 0, INT32_MAX),
        ("spec.run.backoffLimit", BASE, 0, INT32_MAX),
        ("spec.run.activeDeadlineSeconds", BASE, 1, INT32_MAX),
        ("spec.run.ttlSecondsAfterFinished", BASE, 0, INT32_MAX),
        ("spec.history.successfulRuns", BASE, 0, INT32_MAX),
        ("spec.history.failedRuns", BASE, 0, INT32_MAX),
        ("spec.trigger.schedule.startingDeadlineSeconds", schedule, 0, INT32_MAX),
        ("spec.trigger.queue.targetPerReplica", queue, 1, 1_000_000_000),
        ("spec.trigger.queue.activationThreshold", queue, 0, 1_000_000_000),
        ("spec.trigger.queue.pollingIntervalSeconds", queue, 1, 3600),
        ("spec.trigger.queue.cooldownSeconds", queue, 0, 86400),
    ]
    for path, base, low, high in numbers:
        short = path.rsplit(".", 1)[1]
        add(f"{short}-at-max", "accept", at(path, high, base))
        add(f"{short}-above-max", f"reject {path}", at(path, high + 1, base))
        add(f"{short}-below-min", f"reject {path}", at(path, low - 1, base))
    add("concurrency-int64", "reject spec.concurrency", at("spec.concurrency", 2**63 - 1))
    add(
        "concurrency-huge",
        "reject spec.concurrency",
        b"""\
apiVersion: bgjob.dev/v1alpha1
kind: BackgroundJob
metadata: {name: hostile}
spec:
  image: worker
  trigger: {continuous: {}}
  concurrency: 99999999999999999999999999999
""",
    )
    add("concurrency-string", "reject spec.concurrency", at("spec.concurrency", "3"))
    add("concurrency-fraction", "reject spec.concurrency", at("spec.concurrency", 1.5))
    add("concurrency-whole-float", "accept", at("spec.concurrency", 2.0))
    add("concurrency-bool", "reject spec.concurrency", at("spec.concurrency", True))
    add("concurrency-list", "reject spec.concurrency", at("spec.concurrency", [1]))
    add("singleton-string", "reject spec.singleton", at("spec.singleton", "true"))
    add("suspend-yaml-y", "accept", BASE_TEXT.replace(b"  trigger:", b"  suspend: y\n  trigger:"))
    add("suspend-yaml-on", "accept", BASE_TEXT.replace(b"  trigger:", b"  suspend: on\n  trigger:"))
    add("delay-at-max", "accept", at("spec.trigger", {"once": {"delaySeconds": 366 * 86400}}))
    add(
        "delay-above-max",
        "reject spec.trigger.once.delaySeconds",
        at("spec.trigger", {"once": {"delaySeconds": 366 * 86400 + 1}}),
    )
    add(
        "prestop-beyond-grace",
        "accept",
        at("spec.shutdown", {"gracePeriodSeconds": 10, "preStopSleepSeconds": 11}),
    )
    add(
        "prestop-within-default-grace",
        "accept",
        at("spec.shutdown", {"preStopSleepSeconds": 30}),
    )
    add(
        "min-replicas-above-int32",
        "reject spec.trigger.queue.minReplicas",
        at("spec.trigger.queue.minReplicas", INT32_MAX + 1, queue),
    )

    # --- once.at: RFC 3339 with an offset, before 9999 -----------------------------------
    times = [
        ("utc", "2026-12-01T03:00:00Z", True),
        ("offset", "2026-12-01T04:00:00+01:00", True),
        ("fraction", "2026-12-01T03:00:00.123456789Z", True),
        ("year-9998", "9998-12-31T23:59:59Z", True),
        ("year-9999", "9999-01-01T00:00:00Z", False),
        ("year-9999-by-offset", "9998-12-31T23:00:00-05:00", False),
        ("no-offset", "2026-12-01T03:00:00", False),
        ("date-only", "2026-12-01", False),
        ("space", "2026-12-01 03:00:00Z", False),
        ("lowercase-t", "2026-12-01t03:00:00z", False),
        ("february-30", "2026-02-30T00:00:00Z", False),
        ("hour-24", "2026-12-01T24:00:00Z", False),
        ("leap-second", "2026-12-31T23:59:60Z", False),
        ("year-0", "0000-01-01T00:00:00Z", False),
        ("words", "tomorrow", False),
        ("trailing-newline", "2026-12-01T03:00:00Z\n", False),
    ]
    for name, value, ok in times:
        expect = "accept" if ok else "reject spec.trigger.once.at"
        add(f"at-{name}", expect, at("spec.trigger", {"once": {"at": value}}))
    add(
        "at-number", "reject spec.trigger.once.at", at("spec.trigger", {"once": {"at": 1767225600}})
    )
    add(
        "at-unquoted-yaml-time",
        "accept",
        BASE_TEXT.replace(b"{continuous: {}}", b"{once: {at: 2026-12-01T03:00:00Z}}"),
    )
    add(
        "at-unquoted-yaml-date",
        "reject spec.trigger.once.at",
        BASE_TEXT.replace(b"{continuous: {}}", b"{once: {at: 2026-12-01}}"),
    )

    # --- cron in the CronJob controller's dialect ----------------------------------------
    crons = [
        ("five-fields", "0 3 * * *", True),
        ("names", "0 3 * JAN-MAR mon-fri", True),
        ("steps-lists", "*/15 0-6,22,23 1-31/2 * 0-6", True),
        ("single-step", "5/10 * * * *", True),
        ("daily", "@daily", True),
        ("every", "@every 1h30m", False),
        ("never-fires-but-admitted", "0 0 31 2 *", True),
        ("four-fields", "0 3 * *", False),
        ("seconds-field", "0 0 3 * * *", False),
        ("quartz-L", "0 0 L * *", False),
        ("quartz-hash", "0 0 * * 1#2", False),
        ("jenkins-H", "H 3 * * *", False),
        ("question-mark", "0 3 ? * *", False),
        ("tz-prefix", "TZ=UTC 0 3 * * *", False),
        ("cron-tz-prefix", "CRON_TZ=Europe/Madrid 0 3 * * *", False),
        ("minute-60", "60 3 * * *", False),
        ("hour-24", "0 24 * * *", False),
        ("dom-0", "0 0 0 * *", False),
        ("month-13", "0 0 1 13 *", False),
        ("dow-7", "0 0 * * 7", False),
        ("step-zero", "*/0 * * * *", False),
        ("unknown-macro", "@fortnightly", False),
        ("every-no-unit", "@every 10", False),
        ("empty", "", False),
        ("newline-inside", "0 3 * * *\n0 4 * * *", False),
        ("unicode-digits", "\u0660 3 * * *", False),
    ]
    for name, value, ok in crons:
        expect = "accept" if ok else "reject spec.trigger.schedule.cron"
        add(f"cron-{name}", expect, at("spec.trigger", {"schedule": {"cron": value}}))

    # --- the pod template overlay has real types ----------------------------------------
    def template(spec: Any) -> dict[str, Any]:
        return at("spec.template", {"spec": spec})

    t = "spec.template.spec"
    add(
        "template-valid-overlay",
        "accept",
        template(
            {
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "volumes": [{"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}}],
                "containers": [
                    {"name": "worker", "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]},
                    {"name": "sidecar", "image": "proxy:1", "ports": [{"containerPort": 8080}]},
                ],
                "priorityClassName": "low",
            }
        ),
    )
    add("template-containers-string", f"reject {t}.containers", template({"containers": "worker"}))
    add(
        "template-containers-of-strings",
        f"reject {t}.containers[0]",
        template({"containers": ["worker"]}),
    )
    add(
        "template-container-without-name",
        f"reject {t}.containers[0].name",
        template({"containers": [{"image": "x"}]}),
    )
    add(
        "template-container-unknown-field",
        f"reject {t}.containers[0].imagee",
        template({"containers": [{"name": "worker", "imagee": "x"}]}),
    )
    add(
        "template-duplicate-containers",
        f"reject {t}.containers[1]",
        template({"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]}),
    )
    add(
        "template-duplicate-ports",
        f"reject {t}.containers[0].ports[1]",
        template(
            {
                "containers": [
                    {
                        "name": "worker",
                        "ports": [{"containerPort": 80}, {"containerPort": 80, "protocol": "TCP"}],
                    }
                ]
            }
        ),
    )
    add("template-unknown-podspec-field", f"reject {t}.replicas", template({"replicas": 3}))
    add("template-volumes-object", f"reject {t}.volumes", template({"volumes": {"a": {}}}))
    add(
        "template-node-selector-int",
        f"reject {t}.nodeSelector.zone",
        template({"nodeSelector": {"zone": 1}}),
    )
    add(
        "template-toleration-effect",
        f"reject {t}.tolerations[0].effect",
        template({"tolerations": [{"key": "a", "effect": "Sometimes"}]}),
    )
    add(
        "template-port-string",
        f"reject {t}.containers[0].ports[0].containerPort",
        template({"containers": [{"name": "w", "ports": [{"containerPort": "http"}]}]}),
    )
    add(
        "template-quantity-bool",
        f"reject {t}.overhead.cpu",
        template({"overhead": {"cpu": True}}),
    )
    add(
        "template-quantity-number",
        "accept",
        template({"containers": [{"name": "w", "resources": {"limits": {"cpu": 2}}}]}),
    )
    add(
        "template-probe-port-name",
        "accept",
        template({"containers": [{"name": "w", "livenessProbe": {"httpGet": {"port": "http"}}}]}),
    )
    add("template-spec-string", f"reject {t}", template("privileged"))
    add(
        "template-restart-policy",
        f"reject {t}.restartPolicy",
        template({"restartPolicy": "Sometimes"}),
    )
    add(
        "template-security-context-list",
        f"reject {t}.securityContext",
        template({"securityContext": [{"runAsUser": 0}]}),
    )
    add(
        "template-metadata-labels-int",
        "reject spec.template.metadata.labels.tier",
        at("spec.template", {"metadata": {"labels": {"tier": 1}}}),
    )
    add(
        "template-deep-nesting",
        f"reject {t}.affinity",
        template({"affinity": nested(40)}),
    )

    # --- env and envFrom: core/v1 types too ----------------------------------------------
    add(
        "env-duplicate-names",
        "reject spec.env",
        at("spec.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
    )
    add(
        "env-value-from-unknown",
        "reject spec.env",
        at("spec.env", [{"name": "A", "valueFrom": {"vaultRef": {"path": "x"}}}]),
    )
    add(
        "env-value-from-secret",
        "accept",
        at("spec.env", [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
    )
    add(
        "env-value-from-no-key",
        "reject spec.env",
        at("spec.env", [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]),
    )
    add("env-from-string", "reject spec.envFrom", at("spec.envFrom", [{"secretRef": "creds"}]))
    add("env-not-a-list", "reject spec.env", at("spec.env", {"A": "1"}))

    # --- metadata, apiVersion, kind --------------------------------------------------------
    add("metadata-string", "reject metadata", doc(metadata="hostile"))
    add("metadata-list", "reject metadata", doc(metadata=["hostile"]))
    add("metadata-missing", "reject name", {k: v for k, v in BASE.items() if k != "metadata"})
    add("name-missing", "reject name", doc(metadata={"labels": {"a": "b"}}))
    add("name-uppercase", "reject metadata.name", doc(metadata={"name": "Hostile"}))
    add("name-underscore", "reject metadata.name", doc(metadata={"name": "host_ile"}))
    add("name-int", "reject metadata.name", doc(metadata={"name": 42}))
    add("name-53", "reject metadata.name", doc(metadata={"name": "a" * 53}))
    add("name-52", "accept", doc(metadata={"name": "a" * 52}))
    add("name-dotted", "accept", doc(metadata={"name": "hostile.v2"}))
    add("name-leading-dash", "reject metadata.name", doc(metadata={"name": "-hostile"}))
    add(
        "namespace-invalid",
        "reject namespace",
        doc(metadata={"name": "hostile", "namespace": "Not_A_Namespace"}),
    )
    add(
        "namespace-int",
        "reject metadata.namespace",
        doc(metadata={"name": "hostile", "namespace": 7}),
    )
    add("namespace-default", "accept", doc(metadata={"name": "hostile", "namespace": "default"}))
    add(
        "labels-bad-key",
        "reject metadata.labels",
        doc(metadata={"name": "hostile", "labels": {"bad key!": "x"}}),
    )
    add(
        "labels-long-value",
        "reject metadata.labels",
        doc(metadata={"name": "hostile", "labels": {"a": "v" * 64}}),
    )
    add(
        "labels-int-value",
        "reject metadata.labels",
        doc(metadata={"name": "hostile", "labels": {"a": 1}}),
    )
    add(
        "labels-string",
        "reject metadata.labels",
        doc(metadata={"name": "hostile", "labels": "a=b"}),
    )
    add(
        "annotations-int-value",
        "reject metadata.annotations",
        doc(metadata={"name": "hostile", "annotations": {"a": 1}}),
    )
    add(
        "annotations-bad-key",
        "reject metadata.annotations",
        doc(metadata={"name": "hostile", "annotations": {"/x": "y"}}),
    )
    add(
        "annotations-too-big",
        "reject metadata.annotations",
        doc(metadata={"name": "hostile", "annotations": {"a": "x" * (256 * 1024 + 1)}}),
    )
    add(
        "metadata-unknown-field",
        "reject metadata.owner",
        doc(metadata={"name": "hostile", "owner": "me"}),
    )
    add("apiversion-v1", "reject", doc(apiVersion="bgjob.dev/v1"))
    add("apiversion-missing", "reject", {k: v for k, v in BASE.items() if k != "apiVersion"})
    add("kind-missing", "reject", {k: v for k, v in BASE.items() if k != "kind"})
    add("kind-lowercase", "reject", doc(kind="backgroundjob"))
    add("top-level-unknown-field", "reject replicas", doc(replicas=3))
    add("status-is-ignored", "accept", doc(status={"state": "Bogus", "replicas": "many"}))
    add("spec-string", "reject spec", {**BASE, "spec": "run everything"})
    add("spec-missing", "reject spec", {k: v for k, v in BASE.items() if k != "spec"})
    add("json-manifest", "accept", json.dumps(BASE).encode())

    # --- not YAML, or YAML no one should parse ------------------------------------------
    add("yaml-invalid", "reject", b"apiVersion: bgjob.dev/v1alpha1\nkind: [BackgroundJob\n")
    add("yaml-tab-indent", "reject", b"apiVersion: v1\nkind: BackgroundJob\nmetadata:\n\tname: x\n")
    # kubectl reads invalid UTF-8 as U+FFFD, as Go does: an odd image name, admitted.
    add("not-utf8", "accept", BASE_TEXT.replace(b"worker", b"w\xff\xfeorker"))
    add("latin1-name", "reject", BASE_TEXT.replace(b"name: hostile", b"name: h\xe9"))
    add(
        "python-object-tag",
        "reject",
        BASE_TEXT.replace(b"image: worker", b"image: !!python/object/apply:os.system ['id']"),
    )
    add(
        "python-name-tag",
        "reject",
        BASE_TEXT.replace(b"image: worker", b"image: !!python/name:os.system"),
    )
    add("billion-laughs", "reject", billion_laughs())
    add(
        "deep-nesting",
        "reject",
        b"apiVersion: bgjob.dev/v1alpha1\nkind: BackgroundJob\n"
        b"metadata: {name: hostile}\nspec: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    )
    add("scalar-document", "reject", b"just a string\n")
    add("list-document", "reject", b"- apiVersion: bgjob.dev/v1alpha1\n- kind: BackgroundJob\n")
    add("empty-file", "reject", b"")
    add("only-comments", "reject", b"# nothing here\n---\n# nor here\n")
    add(
        "nan-concurrency",
        "reject",
        BASE_TEXT.replace(b"  trigger:", b"  concurrency: .nan\n  trigger:"),
    )
    add(
        "two-valid-documents",
        "accept",
        BASE_TEXT + b"---\n" + BASE_TEXT.replace(b"name: hostile", b"name: hostile-2"),
    )

    # --- numbers as go-yaml v2 (kubectl) reads them, not as YAML 1.1 does ------------------
    for label, text, expect in [
        ("exponent", b"1e3", "accept"),
        ("exponent-upper", b"2E1", "accept"),
        ("octal-0o", b"0o10", "accept"),
        ("octal-leading-zero", b"010", "accept"),
        ("hex", b"0x10", "accept"),
        ("underscores", b"1_000", "accept"),
        ("sexagesimal", b"1:30", "reject spec.trigger.once.delaySeconds"),
        ("fraction", b"1.5", "reject spec.trigger.once.delaySeconds"),
    ]:
        add(
            f"yaml-number-{label}",
            expect,
            BASE_TEXT.replace(b"continuous: {}", b"once: {delaySeconds: " + text + b"}"),
        )

    # --- a Secret reference is a name in this namespace, never a path ---------------------
    def secret_ref(name: str, key: str = "url") -> dict[str, Any]:
        url_from = {"urlFrom": {"secretKeyRef": {"name": name, "key": key}}, "list": "jobs"}
        return doc({"trigger": {"queue": {"redis": url_from}}})

    add("secret-ref-plain", "accept", secret_ref("redis-creds"))
    add("secret-ref-dotted", "accept", secret_ref("redis.creds-2"))
    for label, name in [
        ("traversal", "../../victim/secrets/redis-creds"),
        ("all-secrets", "../../../secrets"),
        ("slash", "a/b"),
        ("dot-dot", ".."),
        ("escaped", "%2e%2e"),
        ("upper", "Redis"),
        ("long", "a" * 254),
    ]:
        add(
            f"secret-ref-{label}",
            "reject spec.trigger.queue.redis.urlFrom.secretKeyRef.name",
            secret_ref(name),
        )
    add(
        "secret-key-slash",
        "reject spec.trigger.queue.redis.urlFrom.secretKeyRef.key",
        secret_ref("redis-creds", "a/b"),
    )
    for name, expect, queue in WORK_QUEUES:
        add(f"queue-{name}", expect, doc({"concurrency": 2, "trigger": {"queue": queue}}))
    return out


BASE_TEXT = b"""\
apiVersion: bgjob.dev/v1alpha1
kind: BackgroundJob
metadata:
  name: hostile
spec:
  image: worker
  trigger: {continuous: {}}
"""


def nested(depth: int) -> Any:
    node: Any = {}
    for _ in range(depth):
        node = {"nodeAffinity": node}
    return node


def billion_laughs() -> bytes:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [" + ",".join([f"*{previous}"] * 9) + "]")
    head = BASE_TEXT.replace(b"  image: worker", b"  image: worker\n  args: *i")
    return ("\n".join(lines) + "\n").encode().replace(b"a: &a", b"x-a: &a") + head


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.yaml"):
        old.unlink()
    written = cases()
    names = [name for name, _, _ in written]
    assert len(names) == len(set(names)), "case names must be unique"
    for index, (name, expect, content) in enumerate(written):
        path = OUT / f"{index:03d}-{name}.yaml"
        path.write_bytes(f"# expect: {expect}\n".encode() + content)
    print(f"wrote {len(written)} manifests to {OUT}")


if __name__ == "__main__":
    main()
