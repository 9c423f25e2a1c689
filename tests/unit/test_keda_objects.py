"""KEDA mode: ScaledObject and TriggerAuthentication builders, and the reconcile around them.

The builders are pure and tested with tables. The reconcile tests use a small in-memory
API stand-in: they check which objects are written and pruned in each engine, not that
the API server accepts them (tests/e2e/test_keda.py does that with KEDA's real CRDs).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from specs import CONTINUOUS, bgjob, body
from test_chart import CHART, RELEASE, deployment, objects, only, run_helm

from bgjob import workloads
from bgjob.api.names import MANAGER
from bgjob.handlers import scaling_engine
from bgjob.kube import ApiError, Kube
from bgjob.reconcile import HANDOVER_MANAGER, Reconciler, preflight
from bgjob.scaling.network import NetworkPolicy
from bgjob.scaling.scaler import Scaler, View
from bgjob.store import Store
from bgjob.workloads import keda

REDIS = {"redis": {"url": "redis://redis.shop:6379/2", "list": "thumbs"}}
RABBIT_URL = {"rabbitmq": {"url": "amqp://rabbit.shop:5672/mail", "queue": "mails"}}
RABBIT_SECRET = {
    "rabbitmq": {
        "urlFrom": {"secretKeyRef": {"name": "rabbit", "key": "url"}},
        "queue": "mails",
    }
}
REDIS_SECRET = {
    "redis": {"urlFrom": {"secretKeyRef": {"name": "redis", "key": "url"}}, "list": "thumbs"}
}


def queue_bgjob(backend: dict[str, Any], *, concurrency: int = 4, **settings: Any) -> Any:
    singleton = settings.pop("singleton", False)
    suspend = settings.pop("suspend", False)
    return bgjob(
        "thumbs",
        trigger={"queue": {**backend, **settings}},
        concurrency=concurrency,
        singleton=singleton,
        suspend=suspend,
    )


def built(bgj: Any) -> list[dict[str, Any]]:
    workload = workloads.workload(bgj)
    assert workload is not None
    return keda.keda_children(bgj, keda.without_replicas(workload))


def scaled_object(bgj: Any) -> dict[str, Any]:
    (found,) = [o for o in built(bgj) if o["kind"] == "ScaledObject"]
    return found


# --- the builders ---------------------------------------------------------------------


REDIS_URLS = [
    # (id, url, metadata)
    (
        "host, port and database",
        "redis://redis.shop:6380/3",
        {"address": "redis.shop:6380", "databaseIndex": "3"},
    ),
    ("default port, no database", "redis://redis.shop", {"address": "redis.shop:6379"}),
    (
        "a user without password",
        "redis://worker@redis.shop:6379/0",
        {"address": "redis.shop:6379", "databaseIndex": "0", "username": "worker"},
    ),
    ("TLS", "rediss://redis.shop:6379", {"address": "redis.shop:6379", "enableTLS": "true"}),
    ("IPv6", "redis://[::1]:6379/1", {"address": "[::1]:6379", "databaseIndex": "1"}),
]


@pytest.mark.parametrize(("url", "expected"), [pytest.param(u, m, id=i) for i, u, m in REDIS_URLS])
def test_a_redis_url_becomes_kedas_address_and_database_index(
    url: str, expected: dict[str, str]
) -> None:
    assert keda.redis_metadata(url) == expected


@pytest.mark.parametrize(
    "url", ["unix:///var/run/redis.sock", "redis://redis.shop/cache", "redis.shop:6379"]
)
def test_a_redis_url_keda_cannot_express_names_the_field(url: str) -> None:
    with pytest.raises(keda.KedaUnsupported, match=r"spec\.trigger\.queue\.redis\.url"):
        keda.redis_metadata(url)


def test_a_redis_queue_is_one_scaled_object_with_a_redis_trigger() -> None:
    bgj = queue_bgjob(
        REDIS,
        targetPerReplica=7,
        activationThreshold=2,
        minReplicas=1,
        pollingIntervalSeconds=3,
        cooldownSeconds=45,
    )
    (only_object,) = built(bgj)
    assert (only_object["apiVersion"], only_object["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    meta = only_object["metadata"]
    assert (meta["name"], meta["namespace"]) == ("thumbs", "shop")
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "bgjob-operator"
    assert meta["ownerReferences"][0]["uid"] == bgj.metadata.uid
    assert meta["annotations"]["bgjob.dev/spec-hash"]
    assert only_object["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "thumbs"},
        "pollingInterval": 3,
        "cooldownPeriod": 45,
        # The built-in engine waits cooldownSeconds before every step down: so does the HPA.
        "advanced": {
            "horizontalPodAutoscalerConfig": {
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 45}}
            }
        },
        "minReplicaCount": 1,
        "maxReplicaCount": 4,
        "triggers": [
            {
                "type": "redis",
                "metadata": {
                    "address": "redis.shop:6379",
                    "databaseIndex": "2",
                    "listName": "thumbs",
                    "listLength": "7",
                    "activationListLength": "2",
                },
            }
        ],
    }


def test_a_rabbitmq_url_goes_into_the_trigger_as_host() -> None:
    (only_object,) = built(queue_bgjob(RABBIT_URL, targetPerReplica=10, activationThreshold=1))
    assert only_object["spec"]["triggers"] == [
        {
            "type": "rabbitmq",
            "metadata": {
                "protocol": "amqp",
                "mode": "QueueLength",
                "value": "10",
                "activationValue": "1",
                "queueName": "mails",
                "host": "amqp://rabbit.shop:5672/mail",
            },
        }
    ]


def test_rabbitmq_credentials_from_a_secret_go_through_a_trigger_authentication() -> None:
    auth, scaled = built(queue_bgjob(RABBIT_SECRET))
    assert (auth["kind"], auth["metadata"]["name"]) == ("TriggerAuthentication", "thumbs")
    assert auth["spec"] == {
        "secretTargetRef": [{"parameter": "host", "name": "rabbit", "key": "url"}]
    }
    (trigger,) = scaled["spec"]["triggers"]
    assert "host" not in trigger["metadata"]
    assert trigger["authenticationRef"] == {"kind": "TriggerAuthentication", "name": "thumbs"}


def test_redis_credentials_from_a_secret_are_unsupported_by_keda_and_say_so() -> None:
    with pytest.raises(keda.KedaUnsupported) as error:
        built(queue_bgjob(REDIS_SECRET))
    assert "spec.trigger.queue.redis.urlFrom" in str(error.value)
    assert "--scaling-engine=builtin" in str(error.value)


@pytest.mark.parametrize(
    ("spec", "kind", "bounds"),
    [
        pytest.param({"concurrency": 5}, "Deployment", (0, 5), id="concurrency is the maximum"),
        pytest.param(
            {"concurrency": 3, "minReplicas": 2}, "Deployment", (2, 3), id="minReplicas kept"
        ),
        pytest.param(
            {"concurrency": 1, "singleton": True}, "StatefulSet", (0, 1), id="singleton: 0 or 1"
        ),
        pytest.param(
            {"concurrency": 1, "singleton": True, "minReplicas": 1},
            "StatefulSet",
            (1, 1),
            id="singleton kept at one",
        ),
    ],
)
def test_the_scaled_object_keeps_the_replicas_within_the_specs_bounds(
    spec: dict[str, Any], kind: str, bounds: tuple[int, int]
) -> None:
    scaled = scaled_object(queue_bgjob(REDIS, **spec))
    assert scaled["spec"]["scaleTargetRef"]["kind"] == kind
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == bounds


def test_suspend_pauses_keda_at_zero_replicas() -> None:
    scaled = scaled_object(queue_bgjob(REDIS, suspend=True))
    assert scaled["metadata"]["annotations"][keda.PAUSED_REPLICAS_ANNOTATION] == "0"
    assert keda.PAUSED_REPLICAS_ANNOTATION not in scaled_object(queue_bgjob(REDIS))["metadata"].get(
        "annotations", {}
    )


@pytest.mark.parametrize("singleton", [False, True])
def test_the_worker_in_keda_mode_has_no_replicas_and_a_fresh_spec_hash(singleton: bool) -> None:
    workload = workloads.workload(
        queue_bgjob(REDIS, concurrency=1, singleton=singleton, minReplicas=1)
    )
    assert workload is not None
    stripped = keda.without_replicas(workload)
    assert "replicas" not in stripped["spec"]
    assert workload["spec"]["replicas"] == 1, "the builtin manifest is left as it was"
    hash_key = "bgjob.dev/spec-hash"
    assert (
        stripped["metadata"]["annotations"][hash_key]
        != (workload["metadata"]["annotations"][hash_key])
    )
    assert stripped["spec"]["template"] == workload["spec"]["template"]


# --- reconcile in each engine ---------------------------------------------------------


class FakeKube:
    """An in-memory API server: apply stores the object with a status, delete drops it."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.statuses: list[dict[str, Any]] = []

    def apply(
        self, manifest: dict[str, Any], manager: str = MANAGER, *, create_only: bool = False
    ) -> dict[str, Any]:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        self.calls.append(("apply", kind, manager))
        if create_only and (kind, name) in self.objects:
            raise ApiError(409, "Conflict", "the object has been modified")
        served = copy.deepcopy(manifest)
        if kind in ("Deployment", "StatefulSet"):
            served["spec"].setdefault("replicas", 1)
            served["metadata"]["generation"] = 1
            served["status"] = {"observedGeneration": 1}
        self.objects[(kind, name)] = served
        return served

    def delete(self, kind: str, namespace: str, name: str, propagation: str) -> None:
        self.calls.append(("delete", kind, name))
        self.objects.pop((kind, name), None)

    def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.statuses.append(status)
        return {"metadata": {"name": name, "namespace": namespace}, "status": status}

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", kind, name))
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found is not None else None

    def event(self, involved: dict[str, Any], kind: str, reason: str, message: str) -> None:
        self.calls.append(("event", reason, message))


class FakeScaler:
    """Records which BackgroundJobs the reconcile hands to the built-in scaler."""

    def __init__(self) -> None:
        self.tracked: set[tuple[str, str]] = set()

    def track(self, bgj: Any, current: int | None) -> None:
        self.tracked.add((bgj.metadata.namespace, bgj.metadata.name))

    def untrack(self, key: tuple[str, str]) -> None:
        self.tracked.discard(key)

    def view(self, key: tuple[str, str]) -> View | None:
        return View(replicas=3, backlog=12, problem=None) if key in self.tracked else None


class Cluster:
    """A store, the fake API server and a reconciler for one engine."""

    def __init__(self, engine: str, store: Store | None = None, kube: FakeKube | None = None):
        self.kube = kube or FakeKube()
        self.store = store or Store()
        self.scaler = FakeScaler()
        self.reconciler = Reconciler(
            cast(Kube, self.kube),
            self.store,
            clock=lambda: datetime(2026, 3, 1, 12, 5, tzinfo=UTC),
            scaler=cast(Scaler, self.scaler),
            scaling_engine=engine,
        )

    def reconcile(self, **spec: Any) -> dict[str, Any]:
        self.store.put_bgjob(body("thumbs", **spec))
        self.reconciler.reconcile(("shop", "thumbs"))
        return self.kube.statuses[-1] if self.kube.statuses else {}

    def kinds(self) -> set[str]:
        return {kind for kind, _ in self.kube.objects}


def test_keda_mode_writes_a_scaled_object_and_leaves_replicas_to_keda() -> None:
    cluster = Cluster("keda")
    status = cluster.reconcile(trigger={"queue": RABBIT_SECRET}, concurrency=4)
    assert cluster.kinds() == {"Deployment", "ScaledObject", "TriggerAuthentication"}
    applied = [c for c in cluster.kube.calls if c[0] == "apply"]
    assert ("apply", "Deployment", MANAGER) in applied
    assert cluster.scaler.tracked == set(), "the built-in scaler must not scale it too"
    # The API server's default (1) is what runs; KEDA would change it, we don't.
    assert status["desiredReplicas"] == 1
    assert "queueLength" not in status


def test_keda_mode_does_nothing_the_second_time() -> None:
    cluster = Cluster("keda")
    cluster.reconcile(trigger={"queue": REDIS}, concurrency=4)
    calls = len(cluster.kube.calls)
    cluster.reconcile(trigger={"queue": REDIS}, concurrency=4)
    assert cluster.kube.calls[calls:] == []


def test_keda_mode_hands_the_replicas_over_before_dropping_them() -> None:
    store, kube = Store(), FakeKube()
    Cluster("builtin", store, kube).reconcile(trigger={"queue": REDIS}, concurrency=4)
    assert kube.objects[("Deployment", "thumbs")]["spec"]["replicas"] == 3
    kube.calls.clear()
    Cluster("keda", store, kube).reconcile(trigger={"queue": REDIS}, concurrency=4)
    applies = [(kind, manager) for verb, kind, manager in kube.calls if verb == "apply"]
    assert applies[:2] == [("Deployment", HANDOVER_MANAGER), ("Deployment", MANAGER)]
    assert ("ScaledObject", MANAGER) in applies


def test_builtin_mode_prunes_what_keda_mode_left_behind() -> None:
    store, kube = Store(), FakeKube()
    Cluster("keda", store, kube).reconcile(trigger={"queue": RABBIT_SECRET}, concurrency=4)
    builtin = Cluster("builtin", store, kube)
    status = builtin.reconcile(trigger={"queue": RABBIT_SECRET}, concurrency=4)
    assert builtin.kinds() == {"Deployment"}
    assert kube.objects[("Deployment", "thumbs")]["spec"]["replicas"] == 3
    assert status["queueLength"] == 12
    # Not watched in builtin mode: dropped from the cache, so not deleted again.
    assert set(store.children(("shop", "thumbs"))) == {("Deployment", "thumbs")}
    kube.calls.clear()
    builtin.reconcile(trigger={"queue": RABBIT_SECRET}, concurrency=4)
    assert kube.calls == []


def test_keda_mode_prunes_the_keda_objects_when_the_trigger_changes() -> None:
    cluster = Cluster("keda")
    cluster.reconcile(trigger={"queue": RABBIT_SECRET}, concurrency=4)
    cluster.reconcile(trigger={"queue": RABBIT_URL}, concurrency=4)
    assert cluster.kinds() == {"Deployment", "ScaledObject"}
    cluster.reconcile(trigger=CONTINUOUS, concurrency=2)
    assert cluster.kinds() == {"Deployment"}
    assert cluster.kube.objects[("Deployment", "thumbs")]["spec"]["replicas"] == 2


def test_keda_mode_degrades_a_redis_url_from_a_secret_and_writes_nothing() -> None:
    cluster = Cluster("keda")
    status = cluster.reconcile(trigger={"queue": REDIS_SECRET})
    assert cluster.kube.objects == {}
    degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "KEDAUnsupported")
    assert "spec.trigger.queue.redis.urlFrom" in degraded["message"]
    assert status["state"] == "Degraded"


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="scaling engine"):
        Reconciler(cast(Kube, FakeKube()), Store(), scaling_engine="hpa")


# --- choosing the engine at start-up ----------------------------------------------------


class Discovery:
    def __init__(self, answer: bool | ApiError) -> None:
        self.answer = answer

    def served(self, kind: str) -> bool:
        assert kind == "ScaledObject"
        if isinstance(self.answer, ApiError):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("wanted", "answer", "chosen"),
    [
        pytest.param("keda", True, ("keda", True), id="keda with its CRDs"),
        pytest.param("keda", False, ("builtin", False), id="keda without its CRDs: builtin"),
        pytest.param("builtin", True, ("builtin", True), id="builtin, KEDA installed"),
        pytest.param("builtin", False, ("builtin", False), id="builtin"),
        pytest.param(
            "keda", ApiError(503, "ServiceUnavailable", "x"), ("builtin", False), id="no answer"
        ),
    ],
)
def test_keda_is_used_only_when_asked_for_and_installed(
    wanted: str, answer: bool | ApiError, chosen: tuple[str, bool]
) -> None:
    assert scaling_engine(cast(Kube, Discovery(answer)), wanted) == chosen


# --- the chart --------------------------------------------------------------------------


def test_the_chart_lets_the_operator_manage_keda_objects() -> None:
    # The operator's own ClusterRole; the chart also ships aggregated roles for users.
    (role,) = [r for r in only(objects(), "ClusterRole") if r["metadata"]["name"] == RELEASE]
    keda_rules = [rule for rule in role["rules"] if rule["apiGroups"] == ["keda.sh"]]
    assert keda_rules == [
        {
            "apiGroups": ["keda.sh"],
            "resources": ["scaledobjects", "triggerauthentications"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        }
    ]


@pytest.mark.parametrize("engine", ["builtin", "keda"])
def test_the_scaling_engine_value_reaches_the_operator(engine: str) -> None:
    values = [] if engine == "builtin" else ["--set", "scalingEngine=keda"]
    (container,) = deployment(objects(*values))["spec"]["template"]["spec"]["containers"]
    assert f"--scaling-engine={engine}" in container["args"]


def test_an_unknown_scaling_engine_fails_helm_template() -> None:
    result = run_helm("template", RELEASE, str(CHART), "--set", "scalingEngine=hpa")
    assert result.returncode != 0 and "/scalingEngine" in result.stderr, result.stderr


def test_a_cooldown_beyond_an_hour_is_the_longest_window_the_hpa_accepts() -> None:
    (scaled,) = built(queue_bgjob(REDIS, cooldownSeconds=7200))
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 3600
    assert scaled["spec"]["cooldownPeriod"] == 7200


def test_a_management_url_makes_keda_count_unacknowledged_messages_too() -> None:
    rabbit = {
        "rabbitmq": {
            "url": "amqp://shop@rabbit.shop:5672/mail",
            "queue": "mails",
            "managementUrl": "https://rabbit.shop:15672",
        }
    }
    (scaled,) = built(queue_bgjob(rabbit))
    metadata = scaled["spec"]["triggers"][0]["metadata"]
    # KEDA's QueueLength over http counts ready plus unacknowledged messages.
    assert metadata["protocol"] == "http"
    assert metadata["host"] == "https://shop:guest@rabbit.shop:15672/mail"
    assert "excludeUnacknowledged" not in metadata


def test_the_default_vhost_is_escaped_in_the_management_host() -> None:
    assert (
        keda.management_host("amqp://rabbit:5672", "http://rabbit:15672/")
        == "http://guest:guest@rabbit:15672/%2F"
    )


def test_a_management_url_with_credentials_in_a_secret_says_what_keda_loses() -> None:
    rabbit = {"rabbitmq": {**RABBIT_SECRET["rabbitmq"], "managementUrl": "https://rabbit:15672"}}
    bgj = queue_bgjob(rabbit)
    trigger = next(o for o in built(bgj) if o["kind"] == "ScaledObject")["spec"]["triggers"][0]
    assert trigger["metadata"]["protocol"] == "amqp"
    caveat = keda.readiness_caveat(bgj)
    assert caveat is not None and caveat[0] == "KEDAReadyMessagesOnly"
    assert "ready messages only" in caveat[1]
    assert keda.readiness_caveat(queue_bgjob(RABBIT_SECRET)) is None


def test_keda_mode_shows_what_it_cannot_honour_as_a_condition() -> None:
    rabbit = {"rabbitmq": {**RABBIT_SECRET["rabbitmq"], "managementUrl": "https://rabbit:15672"}}
    status = Cluster("keda").reconcile(trigger={"queue": rabbit})
    limited = next(c for c in status["conditions"] if c["type"] == "ScalingLimited")
    assert (limited["status"], limited["reason"]) == ("True", "KEDAReadyMessagesOnly")


@pytest.mark.parametrize(
    "backend",
    [
        {"rq": {"url": "redis://redis.shop:6379/0", "queues": ["emails"]}},
        {"celery": {"url": "redis://redis.shop:6379/0"}},
    ],
)
def test_keda_mode_says_a_job_library_is_counted_by_its_waiting_jobs_only(
    backend: dict[str, Any],
) -> None:
    status = Cluster("keda").reconcile(trigger={"queue": backend})
    limited = next(c for c in status["conditions"] if c["type"] == "ScalingLimited")
    assert (limited["status"], limited["reason"]) == ("True", "KEDAWaitingJobsOnly")
    assert status["state"] != "Degraded"


# --- where KEDA would dial -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "field"),
    [
        pytest.param(
            {"redis": {"url": "redis://2852039166:80/0", "list": "l"}},
            "spec.trigger.queue.redis.url",
            id="a number KEDA may read as 169.254.169.254",
        ),
        pytest.param(
            {"redis": {"url": "redis://0xa9fea9fe/0", "list": "l"}},
            "spec.trigger.queue.redis.url",
            id="hexadecimal",
        ),
        pytest.param(
            {"redis": {"url": "redis://169.254.169.254:6379/0", "list": "l"}},
            "spec.trigger.queue.redis.url",
            id="the metadata service",
        ),
        pytest.param(
            {"redis": {"url": "redis://[::ffff:a9fe:a9fe]:6379/0", "list": "l"}},
            "spec.trigger.queue.redis.url",
            id="IPv4-mapped",
        ),
        pytest.param(
            {"rabbitmq": {"url": "amqp://[fd00:ec2::254]/", "queue": "q"}},
            "spec.trigger.queue.rabbitmq.url",
            id="AWS metadata over IPv6",
        ),
        pytest.param(
            {
                "rabbitmq": {
                    "url": "amqp://rabbit.t.svc/",
                    "queue": "q",
                    "managementUrl": "http://169.254.169.254/latest/meta-data",
                    "allowInsecureManagement": True,
                }
            },
            "spec.trigger.queue.rabbitmq.managementUrl",
            id="management elsewhere than the AMQP host",
        ),
        pytest.param(
            {
                "rabbitmq": {
                    "url": "amqp://169.254.169.254/",
                    "queue": "q",
                    "managementUrl": "http://169.254.169.254/x",
                    "allowInsecureManagement": True,
                }
            },
            "spec.trigger.queue.rabbitmq.url",
            id="both at the metadata service",
        ),
    ],
)
def test_keda_is_never_pointed_where_the_operator_may_not_dial(
    backend: dict[str, Any], field: str
) -> None:
    """The operator's denied networks (decided in preflight) hold for what KEDA dials."""
    problem = preflight(queue_bgjob(backend), NetworkPolicy())
    assert problem is not None and problem.reason == "KEDAUnsupported"
    assert problem.message.startswith(field + ":"), problem.message
    assert preflight(queue_bgjob(backend)) is None, "the built-in scaler checks on dialing"


def test_a_refused_keda_target_degrades_the_bgjob_and_writes_nothing() -> None:
    cluster = Cluster("keda")
    status = cluster.reconcile(
        trigger={"queue": {"redis": {"url": "redis://2852039166:80/0", "list": "l"}}}
    )
    assert cluster.kube.objects == {}
    degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "KEDAUnsupported")
    assert degraded["message"].startswith("spec.trigger.queue.redis.url: host ")


def test_management_on_the_amqp_host_still_goes_to_keda() -> None:
    backend = {
        "rabbitmq": {
            "url": "amqp://rabbit.shop:5672/mail",
            "queue": "mails",
            "managementUrl": "https://RABBIT.shop.:15671",
        }
    }
    (trigger,) = scaled_object(queue_bgjob(backend))["spec"]["triggers"]
    assert trigger["metadata"]["host"] == "https://guest:guest@RABBIT.shop.:15671/mail"


def test_rq_queues_become_one_redis_list_trigger_each_with_the_limits_said_plainly() -> None:
    bgj = queue_bgjob({"rq": {"url": "redis://redis.shop:6379/1", "queues": ["high", "low"]}})
    triggers = scaled_object(bgj)["spec"]["triggers"]
    assert [t["metadata"]["listName"] for t in triggers] == ["rq:queue:high", "rq:queue:low"]
    assert all(t["type"] == "redis" and t["metadata"]["databaseIndex"] == "1" for t in triggers)
    caveat = keda.readiness_caveat(bgj)
    assert caveat is not None and caveat[0] == "KEDAWaitingJobsOnly"
    for lost in ("in flight", "scheduled jobs", "cooldown"):
        assert lost in caveat[1]


def test_a_celery_queue_becomes_a_redis_list_trigger_counting_waiting_messages_only() -> None:
    bgj = queue_bgjob({"celery": {"url": "redis://redis.shop:6379/0", "queue": "emails"}})
    (trigger,) = scaled_object(bgj)["spec"]["triggers"]
    assert trigger["metadata"]["listName"] == "emails"
    caveat = keda.readiness_caveat(bgj)
    assert caveat is not None and caveat[0] == "KEDAWaitingJobsOnly"
    assert "unacknowledged" in caveat[1]


def test_rq_credentials_from_a_secret_are_unsupported_by_keda_and_say_so() -> None:
    secret = {"secretKeyRef": {"name": "redis", "key": "url"}}
    bgj = queue_bgjob({"rq": {"urlFrom": secret, "queues": ["q"]}})
    with pytest.raises(keda.KedaUnsupported, match=r"spec.trigger.queue.rq.urlFrom"):
        scaled_object(bgj)
