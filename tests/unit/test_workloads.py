"""Spec in, manifests out: the contract's workload mapping table and the pod template."""

from __future__ import annotations

import copy
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from specs import CONTINUOUS, CREATED, IMAGE, ONCE, QUEUE, SCHEDULE, TRIGGERS, bgjob, body, queue

from bgjob import workloads
from bgjob.api.models import BackgroundJob, parse
from bgjob.workloads.pod import termination_grace_seconds
from bgjob.workloads.runs import manual_run_name, once_due_time, run_job

Manifest = dict[str, Any]


def children(bgj: BackgroundJob, queue_replicas: int | None = None) -> list[Manifest]:
    """What the operator creates: the long-lived workload, and the Job of a once run."""
    out = []
    workload = workloads.workload(bgj, queue_replicas)
    if workload is not None:
        out.append(workload)
    if bgj.spec.trigger.kind == "once":
        out.append(run_job(bgj, bgj.metadata.name, "once"))
    return out


def child(**kwargs: Any) -> Manifest:
    """The one child of a BackgroundJob built from ``specs.body`` arguments."""
    (only,) = children(bgjob(**kwargs))
    return only


def job_spec(manifest: Manifest) -> dict[str, Any]:
    if manifest["kind"] == "CronJob":
        return manifest["spec"]["jobTemplate"]["spec"]
    assert manifest["kind"] == "Job"
    return manifest["spec"]


def pod(manifest: Manifest) -> dict[str, Any]:
    """The pod template of any child kind."""
    if manifest["kind"] in ("CronJob", "Job"):
        return job_spec(manifest)["template"]
    return manifest["spec"]["template"]


def worker(manifest: Manifest) -> dict[str, Any]:
    (container,) = [c for c in pod(manifest)["spec"]["containers"] if c["name"] == "worker"]
    return container


ALL_TRIGGERS = pytest.mark.parametrize("trigger", list(TRIGGERS))


# --- the mapping table ----------------------------------------------------------------


def test_continuous_is_a_deployment_with_replicas_equal_to_concurrency() -> None:
    manifest = child(trigger=CONTINUOUS, concurrency=3)
    assert (manifest["apiVersion"], manifest["kind"]) == ("apps/v1", "Deployment")
    assert manifest["spec"]["replicas"] == 3
    assert pod(manifest)["spec"]["restartPolicy"] == "Always"


def test_singleton_continuous_is_a_one_replica_statefulset() -> None:
    manifest = child(trigger=CONTINUOUS, singleton=True)
    assert (manifest["apiVersion"], manifest["kind"]) == ("apps/v1", "StatefulSet")
    assert manifest["spec"]["replicas"] == 1
    # Never a second pod before the first is gone, also during rollouts.
    assert manifest["spec"]["podManagementPolicy"] == "OrderedReady"


def test_queue_is_a_deployment_that_starts_at_min_replicas() -> None:
    manifest = child(trigger=queue(minReplicas=2), concurrency=5)
    assert manifest["kind"] == "Deployment"
    assert manifest["spec"]["replicas"] == 2


@pytest.mark.parametrize(
    ("decision", "replicas"),
    [
        pytest.param(None, 2, id="no decision yet: minReplicas"),
        pytest.param(3, 3, id="inside the range"),
        pytest.param(5, 5, id="at concurrency"),
        pytest.param(50, 5, id="above concurrency: clamped"),
        # e.g. the running count (0) right after the user raised minReplicas to 2
        pytest.param(0, 2, id="below minReplicas: clamped"),
    ],
)
def test_queue_replicas_stay_within_min_replicas_and_concurrency(
    decision: int | None, replicas: int
) -> None:
    bgj = bgjob(trigger=queue(minReplicas=2), concurrency=5)
    assert workloads.workload(bgj, decision)["spec"]["replicas"] == replicas


@pytest.mark.parametrize(("decision", "replicas"), [(None, 0), (0, 0), (1, 1), (7, 1)])
def test_singleton_queue_is_a_statefulset_of_zero_or_one(
    decision: int | None, replicas: int
) -> None:
    manifest = workloads.workload(bgjob(trigger=QUEUE, singleton=True), decision)
    assert manifest["kind"] == "StatefulSet"
    assert manifest["spec"]["replicas"] == replicas


def test_schedule_is_a_cronjob_whose_runs_have_concurrency_pods() -> None:
    manifest = child(trigger=SCHEDULE, concurrency=4)
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "CronJob")
    assert manifest["spec"]["schedule"] == "0 3 * * *"
    assert job_spec(manifest)["parallelism"] == 4
    assert job_spec(manifest)["completions"] == 4
    assert job_spec(manifest)["completionMode"] == "Indexed"
    assert pod(manifest)["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize(
    ("overlap", "policy"),
    [(None, "Forbid"), ("Allow", "Allow"), ("Forbid", "Forbid"), ("Replace", "Replace")],
)
def test_schedule_concurrency_policy_is_overlap_and_defaults_to_forbid(
    overlap: str | None, policy: str
) -> None:
    spec: dict[str, Any] = {"trigger": SCHEDULE}
    if overlap:
        spec["overlap"] = overlap
    assert child(**spec)["spec"]["concurrencyPolicy"] == policy


def test_singleton_schedule_forbids_overlap_and_runs_one_pod() -> None:
    manifest = child(trigger=SCHEDULE, singleton=True, overlap="Allow")
    assert manifest["spec"]["concurrencyPolicy"] == "Forbid"
    assert job_spec(manifest)["parallelism"] == 1
    assert job_spec(manifest)["completions"] == 1


def test_once_has_no_long_lived_workload_only_a_job() -> None:
    bgj = bgjob(trigger=ONCE, concurrency=3)
    assert workloads.workload(bgj) is None
    job = run_job(bgj, "worker", "once")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"]["name"] == "worker"
    assert job["spec"]["parallelism"] == 3
    assert job["spec"]["completions"] == 3
    assert job["metadata"]["labels"]["bgjob.dev/run"] == "once"


def test_singleton_once_is_a_job_of_one_pod() -> None:
    job = run_job(bgjob(trigger=ONCE, singleton=True), "worker", "once")
    assert job["spec"]["parallelism"] == 1
    assert job["spec"]["completions"] == 1
    assert "completionMode" not in job["spec"]


# --- what every child carries ---------------------------------------------------------


@ALL_TRIGGERS
def test_children_carry_the_contract_labels_on_object_and_pods(trigger: str) -> None:
    for manifest in children(bgjob("thumbnailer", trigger=TRIGGERS[trigger])):
        for labels in (manifest["metadata"]["labels"], pod(manifest)["metadata"]["labels"]):
            assert labels["app.kubernetes.io/name"] == "thumbnailer"
            assert labels["app.kubernetes.io/instance"] == "thumbnailer"
            assert labels["app.kubernetes.io/managed-by"] == "bgjob-operator"


@ALL_TRIGGERS
def test_children_are_named_after_the_backgroundjob_in_its_namespace(trigger: str) -> None:
    for manifest in children(bgjob("thumbnailer", namespace="media", trigger=TRIGGERS[trigger])):
        assert manifest["metadata"]["name"] == "thumbnailer"
        assert manifest["metadata"]["namespace"] == "media"


@ALL_TRIGGERS
def test_children_are_controlled_by_their_backgroundjob(trigger: str) -> None:
    for manifest in children(bgjob("thumbnailer", uid="uid-42", trigger=TRIGGERS[trigger])):
        assert manifest["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "bgjob.dev/v1alpha1",
                "kind": "BackgroundJob",
                "name": "thumbnailer",
                "uid": "uid-42",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_without_a_uid_rendering_leaves_out_the_owner_reference() -> None:
    assert "ownerReferences" not in child(uid="")["metadata"]


def test_the_pod_selector_does_not_depend_on_the_trigger() -> None:
    # Selectors are immutable: switching continuous <-> queue must keep the Deployment.
    continuous = child(trigger=CONTINUOUS)["spec"]["selector"]
    queued = child(trigger=QUEUE)["spec"]["selector"]
    assert continuous == queued
    assert "bgjob.dev/trigger" not in continuous["matchLabels"]


# --- the pod template -----------------------------------------------------------------

FULL_SPEC: dict[str, Any] = {
    "command": ["python", "-m", "thumbnailer"],
    "args": ["--size", "128"],
    "env": [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
    ],
    "envFrom": [
        {"configMapRef": {"name": "settings"}},
        {"prefix": "DB_", "secretRef": {"name": "db"}},
    ],
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    "serviceAccountName": "thumbnailer",
}


@ALL_TRIGGERS
def test_the_worker_container_runs_what_the_spec_says(trigger: str) -> None:
    for manifest in children(bgjob(trigger=TRIGGERS[trigger], **FULL_SPEC)):
        container = worker(manifest)
        assert container["image"] == IMAGE
        assert container["command"] == FULL_SPEC["command"]
        assert container["args"] == FULL_SPEC["args"]
        assert container["env"][:2] == FULL_SPEC["env"]
        assert container["envFrom"] == FULL_SPEC["envFrom"]
        assert container["resources"] == FULL_SPEC["resources"]
        assert pod(manifest)["spec"]["serviceAccountName"] == "thumbnailer"


def test_without_command_and_args_the_image_entrypoint_runs() -> None:
    container = worker(child())
    assert "command" not in container
    assert "args" not in container
    assert "serviceAccountName" not in pod(child())["spec"]


@ALL_TRIGGERS
def test_the_grace_period_is_the_pods_and_the_workers_shutdown_budget(trigger: str) -> None:
    for manifest in children(bgjob(trigger=TRIGGERS[trigger], shutdown={"gracePeriodSeconds": 45})):
        assert pod(manifest)["spec"]["terminationGracePeriodSeconds"] == 45
        env = {e["name"]: e.get("value") for e in worker(manifest)["env"]}
        assert env["BGJOB_SHUTDOWN_TIMEOUT_SECONDS"] == "45"


def test_the_shutdown_budget_cannot_be_overridden_by_a_user_env_var() -> None:
    manifest = child(
        shutdown={"gracePeriodSeconds": 10},
        env=[{"name": "BGJOB_SHUTDOWN_TIMEOUT_SECONDS", "value": "999"}],
    )
    budget = [e for e in worker(manifest)["env"] if e["name"] == "BGJOB_SHUTDOWN_TIMEOUT_SECONDS"]
    assert budget == [{"name": "BGJOB_SHUTDOWN_TIMEOUT_SECONDS", "value": "10"}]


def test_a_pre_stop_sleep_pauses_before_sigterm() -> None:
    manifest = child(shutdown={"preStopSleepSeconds": 5})
    assert worker(manifest)["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}


@pytest.mark.parametrize(
    ("grace", "pre_stop", "pod_grace"),
    [(30, 0, 30), (45, 5, 50), (0, 3, 3), (0, 0, 0), (10, 20, 30)],
)
def test_the_pods_grace_period_covers_the_pre_stop_sleep_and_the_budget(
    grace: int, pre_stop: int, pod_grace: int
) -> None:
    # Kubernetes counts terminationGracePeriodSeconds from the start of preStop;
    # the worker is promised `grace` seconds from SIGTERM on.
    manifest = child(shutdown={"gracePeriodSeconds": grace, "preStopSleepSeconds": pre_stop})
    assert pod(manifest)["spec"]["terminationGracePeriodSeconds"] == pod_grace
    env = {e["name"]: e.get("value") for e in worker(manifest)["env"]}
    assert env["BGJOB_SHUTDOWN_TIMEOUT_SECONDS"] == str(grace)
    assert termination_grace_seconds(grace, pre_stop) == pod_grace


def test_no_pre_stop_hook_by_default() -> None:
    assert "lifecycle" not in worker(child())


@ALL_TRIGGERS
def test_pods_pass_pod_security_restricted_by_default(trigger: str) -> None:
    for manifest in children(bgjob(trigger=TRIGGERS[trigger])):
        assert pod(manifest)["spec"]["securityContext"] == {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert worker(manifest)["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }


def test_the_template_overlay_wins_over_the_security_defaults() -> None:
    manifest = child(
        template={
            "spec": {
                "securityContext": {"runAsNonRoot": False, "runAsUser": 0},
                "containers": [
                    {"name": "worker", "securityContext": {"allowPrivilegeEscalation": True}}
                ],
            }
        }
    )
    assert pod(manifest)["spec"]["securityContext"] == {
        "runAsNonRoot": False,
        "runAsUser": 0,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert worker(manifest)["securityContext"] == {
        "allowPrivilegeEscalation": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_the_specs_own_fields_win_over_the_template_overlay() -> None:
    manifest = child(
        command=["run"],
        serviceAccountName="thumbnailer",
        shutdown={"gracePeriodSeconds": 45},
        template={
            "metadata": {"labels": {"app.kubernetes.io/instance": "someone-else", "team": "a"}},
            "spec": {
                "serviceAccountName": "default",
                "terminationGracePeriodSeconds": 1,
                "restartPolicy": "OnFailure",
                "containers": [
                    {"name": "worker", "image": "evil:latest", "command": ["sh"], "env": []}
                ],
            },
        },
    )
    spec = pod(manifest)["spec"]
    assert spec["serviceAccountName"] == "thumbnailer"
    assert spec["terminationGracePeriodSeconds"] == 45
    assert spec["restartPolicy"] == "Always"
    container = worker(manifest)
    assert container["image"] == IMAGE
    assert container["command"] == ["run"]
    assert {"name": "BGJOB_SHUTDOWN_TIMEOUT_SECONDS", "value": "45"} in container["env"]
    labels = pod(manifest)["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "worker"
    assert labels["team"] == "a"


def test_the_overlay_adds_scheduling_volumes_and_sidecars() -> None:
    overlay_spec = {
        "nodeSelector": {"pool": "batch"},
        "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "imagePullSecrets": [{"name": "registry"}],
        "priorityClassName": "low",
        "volumes": [{"name": "scratch", "emptyDir": {}}],
        "containers": [
            {"name": "worker", "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}]},
            {"name": "proxy", "image": "proxy:1"},
        ],
    }
    manifest = child(
        template={"metadata": {"annotations": {"team": "media"}}, "spec": overlay_spec}
    )
    spec = pod(manifest)["spec"]
    for key in (
        "nodeSelector",
        "tolerations",
        "affinity",
        "imagePullSecrets",
        "priorityClassName",
        "volumes",
    ):
        assert spec[key] == overlay_spec[key]
    assert worker(manifest)["volumeMounts"] == [{"name": "scratch", "mountPath": "/tmp"}]
    assert [c["name"] for c in spec["containers"]] == ["worker", "proxy"]
    assert pod(manifest)["metadata"]["annotations"] == {"team": "media"}


def test_rendering_one_job_never_changes_the_next_ones_pods() -> None:
    first = child(template={"spec": {"securityContext": {"runAsUser": 0}}})
    pod(first)["spec"]["securityContext"]["runAsNonRoot"] = False
    worker(first)["securityContext"]["capabilities"]["drop"].append("NOTHING")
    second = child()
    assert pod(second)["spec"]["securityContext"]["runAsNonRoot"] is True
    assert "runAsUser" not in pod(second)["spec"]["securityContext"]
    assert worker(second)["securityContext"]["capabilities"] == {"drop": ["ALL"]}


# --- suspend, schedule and run settings -------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"trigger": CONTINUOUS, "concurrency": 3}, id="continuous"),
        pytest.param({"trigger": CONTINUOUS, "singleton": True}, id="singleton continuous"),
        pytest.param({"trigger": queue(minReplicas=2), "concurrency": 3}, id="queue"),
    ],
)
def test_suspend_scales_workers_to_zero(spec: dict[str, Any]) -> None:
    bgj = bgjob(suspend=True, **spec)
    assert workloads.workload(bgj, 3)["spec"]["replicas"] == 0


def test_suspend_suspends_the_cronjob() -> None:
    assert child(trigger=SCHEDULE, suspend=True)["spec"]["suspend"] is True
    assert child(trigger=SCHEDULE)["spec"]["suspend"] is False


def test_the_cronjob_reads_the_schedule_in_its_time_zone_with_its_deadline_and_history() -> None:
    manifest = child(
        trigger={
            "schedule": {
                "cron": "30 2 * * 1-5",
                "timeZone": "Europe/Madrid",
                "startingDeadlineSeconds": 600,
            }
        },
        history={"successfulRuns": 5, "failedRuns": 2},
    )
    spec = manifest["spec"]
    assert spec["schedule"] == "30 2 * * 1-5"
    assert spec["timeZone"] == "Europe/Madrid"
    assert spec["startingDeadlineSeconds"] == 600
    assert spec["successfulJobsHistoryLimit"] == 5
    assert spec["failedJobsHistoryLimit"] == 2


def test_the_cronjob_uses_utc_and_no_deadline_by_default() -> None:
    spec = child(trigger=SCHEDULE)["spec"]
    assert spec["timeZone"] == "UTC"
    assert "startingDeadlineSeconds" not in spec
    assert spec["successfulJobsHistoryLimit"] == 3
    assert spec["failedJobsHistoryLimit"] == 1


@pytest.mark.parametrize("trigger", ["schedule", "once"])
def test_runs_follow_the_run_settings(trigger: str) -> None:
    manifest = child(
        trigger=TRIGGERS[trigger],
        run={"backoffLimit": 0, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 120},
    )
    spec = job_spec(manifest)
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 3600
    assert spec["ttlSecondsAfterFinished"] == 120


@pytest.mark.parametrize("trigger", ["schedule", "once"])
def test_runs_retry_three_times_with_no_deadline_by_default(trigger: str) -> None:
    spec = job_spec(child(trigger=TRIGGERS[trigger]))
    assert spec["backoffLimit"] == 3
    assert "activeDeadlineSeconds" not in spec
    assert "ttlSecondsAfterFinished" not in spec


def test_the_spec_hash_changes_with_the_spec_and_only_then() -> None:
    def spec_hash(**spec: Any) -> str:
        return str(child(**spec)["metadata"]["annotations"]["bgjob.dev/spec-hash"])

    assert spec_hash(concurrency=2) == spec_hash(concurrency=2)
    assert spec_hash(concurrency=2) != spec_hash(concurrency=3)
    assert spec_hash(image="a:1") != spec_hash(image="a:2")


# --- manual runs and the once due time --------------------------------------------------


def test_a_manual_run_name_is_stable_per_request_and_unique_across_requests() -> None:
    bgj = bgjob("nightly-cleanup", trigger=SCHEDULE)
    first = manual_run_name(bgj, "2026-03-01T10:00")
    assert first == manual_run_name(bgj, "2026-03-01T10:00")
    assert first != manual_run_name(bgj, "2026-03-01T11:00")
    assert first.startswith("nightly-cleanup-")


@pytest.mark.parametrize("request_value", ["1", "x" * 300, "now please!"])
def test_a_manual_run_name_is_a_valid_label_value_even_for_the_longest_names(
    request_value: str,
) -> None:
    name = manual_run_name(bgjob("n" * 52, trigger=SCHEDULE), request_value)
    assert len(name) <= 63
    assert set(name) <= set(string.ascii_lowercase + string.digits + "-")
    assert name[-1].isalnum()


def test_a_manual_run_is_a_job_labelled_manual() -> None:
    bgj = bgjob(trigger=SCHEDULE, concurrency=2)
    job = run_job(bgj, manual_run_name(bgj, "1"), "manual")
    assert job["kind"] == "Job"
    assert job["metadata"]["labels"]["bgjob.dev/run"] == "manual"
    assert job["spec"]["parallelism"] == 2


CREATED_AT = datetime.fromisoformat(CREATED.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("once", "due"),
    [
        pytest.param({"at": "2026-12-01T03:00:00Z"}, datetime(2026, 12, 1, 3, tzinfo=UTC), id="at"),
        pytest.param({"delaySeconds": 300}, CREATED_AT + timedelta(seconds=300), id="delay"),
        pytest.param({}, CREATED_AT, id="as soon as possible"),
    ],
)
def test_a_once_run_is_due_at_its_time_after_its_delay_or_at_creation(
    once: dict[str, Any], due: datetime
) -> None:
    assert once_due_time(bgjob(trigger={"once": once}), CREATED_AT) == due


# --- property: any valid spec renders valid Kubernetes objects -------------------------

NAMES = st.from_regex(r"\A[a-z]([a-z0-9-]{0,50}[a-z0-9])?\Z")
TEXT = st.text(string.ascii_letters + string.digits + " -_./=", max_size=20)
QUANTITIES = st.sampled_from(["100m", "1", "2", "0.5", "128Mi", "1Gi", "500M"])
ENV_NAMES = st.from_regex(r"\A[A-Z][A-Z0-9_]{0,15}\Z")


@st.composite
def envs(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(ENV_NAMES, unique=True, max_size=3))
    out = []
    for name in names:
        if draw(st.booleans()):
            out.append({"name": name, "value": draw(TEXT)})
        else:
            ref = {"name": draw(NAMES), "key": draw(ENV_NAMES)}
            out.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    return out


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


triggers = st.one_of(
    st.just({"continuous": {}}),
    st.fixed_dictionaries(
        {"cron": st.sampled_from(["0 3 * * *", "*/5 * * * *", "30 2 * * 1-5", "0 0 1 * *"])},
        optional={
            "timeZone": st.sampled_from(["UTC", "Europe/Madrid", "America/New_York"]),
            "startingDeadlineSeconds": st.integers(0, 86400),
        },
    ).map(lambda s: {"schedule": s}),
    st.one_of(
        st.just({}),
        st.integers(0, 10**6).map(lambda d: {"delaySeconds": d}),
        st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1)).map(
            lambda at: {"at": at.replace(microsecond=0).isoformat() + "Z"}
        ),
    ).map(lambda o: {"once": o}),
    st.fixed_dictionaries(
        {"redis": st.just({"url": "redis://redis:6379/0", "list": "jobs"})},
        optional={
            "targetPerReplica": st.integers(1, 100),
            "activationThreshold": st.integers(0, 100),
            "minReplicas": st.integers(0, 3),
            "pollingIntervalSeconds": st.integers(1, 60),
            "cooldownSeconds": st.integers(0, 600),
        },
    ).map(lambda q: {"queue": q}),
)


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    trigger = draw(triggers)
    singleton = draw(st.booleans())
    min_replicas = trigger.get("queue", {}).get("minReplicas", 0)
    concurrency = 1 if singleton else draw(st.integers(max(1, min_replicas), 50))
    if singleton and min_replicas > 1:
        trigger["queue"]["minReplicas"] = 1
    shutdown = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "gracePeriodSeconds": st.integers(0, 3600),
                "preStopSleepSeconds": st.integers(0, 60),
            },
        )
    )
    # Kubernetes counts the preStop pause within the grace period.
    grace = shutdown.get("gracePeriodSeconds", 30)
    shutdown["preStopSleepSeconds"] = min(shutdown.get("preStopSleepSeconds", 0), grace)
    spec: dict[str, Any] = {
        "image": draw(st.sampled_from([IMAGE, "busybox", "ghcr.io/a/b@sha256:" + "0" * 64])),
        "trigger": trigger,
        "concurrency": concurrency,
        "singleton": singleton,
        "suspend": draw(st.booleans()),
        "shutdown": shutdown,
        "run": draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "backoffLimit": st.integers(0, 10),
                    "activeDeadlineSeconds": st.integers(1, 86400),
                    "ttlSecondsAfterFinished": st.integers(0, 86400),
                },
            )
        ),
        "history": draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "successfulRuns": st.integers(0, 10),
                    "failedRuns": st.integers(0, 10),
                },
            )
        ),
    }
    optional_fields = {
        "command": st.lists(TEXT, min_size=1, max_size=3),
        "args": st.lists(TEXT, max_size=3),
        "env": envs(),
        "envFrom": st.lists(
            st.one_of(
                NAMES.map(lambda n: {"configMapRef": {"name": n}}),
                NAMES.map(lambda n: {"prefix": "S_", "secretRef": {"name": n}}),
            ),
            max_size=2,
        ),
        # Quantities as strings: the official client models type them as str.
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "requests": st.dictionaries(st.sampled_from(["cpu", "memory"]), QUANTITIES),
                "limits": st.dictionaries(st.sampled_from(["cpu", "memory"]), QUANTITIES),
            },
        ),
        "serviceAccountName": NAMES,
        "template": st.fixed_dictionaries(
            {},
            optional={
                "metadata": st.fixed_dictionaries(
                    {},
                    optional={
                        "labels": st.dictionaries(st.sampled_from(["team", "tier"]), NAMES),
                        "annotations": st.dictionaries(st.sampled_from(["a", "b"]), TEXT),
                    },
                ),
                "spec": st.fixed_dictionaries(
                    {},
                    optional={
                        "nodeSelector": st.dictionaries(st.sampled_from(["pool", "zone"]), NAMES),
                        "priorityClassName": NAMES,
                        "securityContext": st.fixed_dictionaries(
                            {},
                            optional={
                                "runAsNonRoot": st.booleans(),
                                "runAsUser": st.integers(0, 65535),
                            },
                        ),
                        "tolerations": st.lists(
                            st.builds(lambda k: {"key": k, "operator": "Exists"}, NAMES), max_size=2
                        ),
                    },
                ),
            },
        ),
    }
    for key, strategy in optional_fields.items():
        if draw(st.booleans()):
            spec[key] = draw(strategy)
    if "schedule" in trigger and draw(st.booleans()):
        spec["overlap"] = draw(st.sampled_from(["Allow", "Forbid", "Replace"]))
    return spec


MODELS = {
    "Deployment": client.V1Deployment,
    "StatefulSet": client.V1StatefulSet,
    "CronJob": client.V1CronJob,
    "Job": client.V1Job,
}
API = client.ApiClient()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=NAMES, spec=valid_specs(), decision=optional(st.integers(-5, 200)))
def test_any_valid_spec_renders_objects_the_official_client_models_accept(
    name: str, spec: dict[str, Any], decision: int | None
) -> None:
    bgj = parse(body(name, **copy.deepcopy(spec)))
    rendered = children(bgj, decision)
    if bgj.spec.trigger.kind in ("schedule", "once"):
        rendered.append(run_job(bgj, manual_run_name(bgj, "now"), "manual"))
    for manifest in rendered:
        model = MODELS[manifest["kind"]].from_dict(manifest)
        # Every field we write is one the API knows, with the type it expects.
        assert API.sanitize_for_serialization(model) == manifest


@settings(max_examples=150, deadline=None)
@given(spec=valid_specs(), decision=optional(st.integers(-5, 200)))
def test_replicas_never_leave_zero_to_concurrency_and_a_singleton_never_exceeds_one(
    spec: dict[str, Any], decision: int | None
) -> None:
    bgj = parse(body(**spec))
    ceiling = 1 if bgj.spec.singleton else bgj.spec.concurrency
    for manifest in children(bgj, decision):
        if manifest["kind"] in ("Deployment", "StatefulSet"):
            assert 0 <= manifest["spec"]["replicas"] <= ceiling
        else:
            assert 1 <= job_spec(manifest)["parallelism"] <= ceiling
