"""Least privilege, measured: the verbs the operator used (API server audit log)
against the verbs the chart grants it.

Named to run last: by then the audit log holds what the whole e2e session made
the operator do. The test also drives each trigger itself, so it proves the
point when run alone. The local control plane writes the audit log
(hack/cluster.py: every ServiceAccount's requests, metadata only).

Every verb used must be granted (and none denied); every verb granted must have
been used, or be listed in UNUSED_BUT_NEEDED with the reason.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import redis
import yaml

from tests.e2e.brokers import RedisServer
from tests.e2e.support import (
    RELEASE,
    SYSTEM_NAMESPACE,
    Kubectl,
    bgjob,
    chart_rbac,
    eventually,
    secret,
)

# Collected before any test runs: earlier sessions on the same cluster do not count.
SESSION_START = datetime.now(UTC)
OPERATOR_USER = f"system:serviceaccount:{SYSTEM_NAMESPACE}:{RELEASE}"
Permission = tuple[str, str, str]  # (API group, resource[/subresource], verb)

UNUSED_BUT_NEEDED: dict[Permission, str] = {
    ("bgjob.dev", "backgroundjobs/finalizers", "update"): "never called: the "
    "OwnerReferencesPermissionEnforcement admission plugin checks it when a child's "
    "owner reference sets blockOwnerDeletion (not enabled on the test bed)",
    **{
        ("keda.sh", resource, verb): "KEDA mode only (--scaling-engine=keda, with KEDA's "
        "CRDs installed), and pruning its objects after a switch back to builtin"
        for resource in ("scaledobjects", "triggerauthentications")
        for verb in ("get", "list", "watch", "create", "patch", "delete")
    },
    **{
        (group, resource, "create"): "server-side apply creates a missing workload with a "
        "PATCH (the audit log's verb); the API server authorizes create for it too"
        for group, resource in (
            ("apps", "deployments"),
            ("apps", "statefulsets"),
            ("batch", "cronjobs"),
        )
    },
    ("bgjob.dev", "backgroundjobs", "get"): "the owner check before a child is created "
    "while the BackgroundJobs' watch is relisting (after a 410 or a dropped stream); with "
    "the watch unbroken the cache answers, so a session without a watch gap never GETs",
    ("batch", "jobs", "get"): "read only when creating a run's Job conflicts (409): "
    "a Job of that name exists already",
    **{
        (group, resource, "get"): "read only when the create-only apply of a workload the "
        "cache does not hold conflicts (409): the name is taken, by someone else's object "
        "or ours not seen yet"
        for group, resource in (("apps", "deployments"), ("apps", "statefulsets"))
    },
    ("coordination.k8s.io", "leases", "create"): "leader election only (--leader-elect, "
    "replicaCount > 1); the e2e operator runs alone",
    ("coordination.k8s.io", "leases", "get"): "leader election only",
    ("coordination.k8s.io", "leases", "update"): "leader election only",
}


def audit_log(kubectl: Kubectl) -> Path:
    configured = os.environ.get("BGJOB_AUDIT_LOG")
    path = (
        Path(configured) if configured else Path(kubectl.kubeconfig).parent / "logs" / "audit.log"
    )
    assert path.is_file(), (
        f"no audit log at {path}: run on the local control plane (hack/test.sh) or set "
        "BGJOB_AUDIT_LOG to the API server's --audit-log-path"
    )
    return path


def used(path: Path) -> tuple[set[Permission], set[Permission]]:
    """(every permission the operator exercised, those the API server denied)."""
    seen: set[Permission] = set()
    allowed: set[Permission] = set()
    denied: set[Permission] = set()
    for line in path.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef")
        if event["user"]["username"] != OPERATOR_USER or not ref:
            continue
        when = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if when < SESSION_START:
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        permission = (ref.get("apiGroup", ""), resource, event["verb"])
        seen.add(permission)
        # RBAC said no: to the request, or to a check inside it (server-side apply
        # creating an object checks create). A write into a terminating namespace is
        # a 403 too, but no permission is missing.
        status = event.get("responseStatus") or {}
        decision = (event.get("annotations") or {}).get("authorization.k8s.io/decision")
        if decision == "forbid" or (
            status.get("code") == 403 and " cannot " in status.get("message", "")
        ):
            denied.add(permission)
        else:
            allowed.add(permission)
    # A restarted API server (the fault tests restart it) forbids everything until
    # its RBAC caches are filled; a permission it allowed at another time is granted.
    return seen, denied - allowed


def granted(kubectl: Kubectl) -> set[Permission]:
    out: set[Permission] = set()
    for doc in yaml.safe_load_all(chart_rbac(kubectl)):
        if doc and doc["kind"] in ("ClusterRole", "Role"):
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        out.update((group, resource, verb) for verb in rule["verbs"])
    return out


def exercise_rq_scale_in(kubectl: Kubectl, ns: str, redis_server: RedisServer) -> None:
    """An rq pool scaled up by a backlog and in again: its pods are marked (patched) with
    their deletion cost before the Deployment scales in."""
    broker = redis.Redis.from_url(redis_server.url)
    queue = f"rq:queue:{ns}-mail"
    spec = {"queues": [f"{ns}-mail"], "url": redis_server.url}
    kubectl.apply(bgjob("mailer", {"trigger": {"queue": {"rq": spec, "cooldownSeconds": 0}}}), ns)
    broker.rpush(queue, "job-1", "job-2")
    selector = "app.kubernetes.io/instance=mailer"

    def running() -> bool:
        pods = kubectl.json("get", "pods", "-n", ns, "-l", selector)["items"]
        return any(p["status"].get("phase") == "Running" for p in pods)

    eventually(running, timeout=60)
    broker.delete(queue)
    eventually(lambda: kubectl.get("deployment", "mailer", ns)["spec"]["replicas"] == 0)  # type: ignore[index]


def exercise(kubectl: Kubectl, ns: str) -> None:
    """Each trigger once, a trigger change, a Secret read, a Degraded event, a failed run."""
    kubectl.apply(secret("broker", url="redis://127.0.0.1:1/0"), ns)
    jobs = {
        "svc": {"trigger": {"continuous": {}}},
        "nightly": {"trigger": {"schedule": {"cron": "0 3 * * *"}}},
        "now": {"trigger": {"once": {}}},
        "consumer": {
            "trigger": {
                "queue": {
                    "redis": {
                        "urlFrom": {"secretKeyRef": {"name": "broker", "key": "url"}},
                        "list": "jobs",
                    }
                }
            }
        },
        "martian": {"trigger": {"schedule": {"cron": "0 3 * * *", "timeZone": "Mars/Base"}}},
        "single": {"trigger": {"continuous": {}}, "singleton": True},
        # A failed run: its pods are listed once, for the exit code.
        "doomed": {
            "trigger": {"once": {}},
            "run": {"backoffLimit": 0},
            "template": {"metadata": {"annotations": {"bgjob.dev/e2e-outcome": "fail"}}},
        },
    }
    for name, spec in jobs.items():
        kubectl.apply(bgjob(name, spec), ns)
    kubectl.wait("bgj/svc", "condition=Ready", ns)
    kubectl.wait("bgj/martian", "condition=Degraded", ns)
    kubectl.wait("bgj/doomed", "condition=Failed", ns, timeout=60)
    eventually(lambda: kubectl.get("job", "now", ns), timeout=60)
    eventually(lambda: kubectl.get("statefulset", "single", ns), timeout=60)
    # Trigger changes replace one child kind with another (deletes).
    changes = [
        ("svc", "nightly", "deployment"),
        ("nightly", "svc", "cronjob"),
        ("single", "svc", "statefulset"),
        ("now", "svc", "job"),
    ]
    for name, new_spec, _ in changes:
        kubectl.apply(bgjob(name, jobs[new_spec]), ns)
    for name, _, old_kind in changes:
        eventually(lambda: kubectl.get(old_kind, name, ns) is None, timeout=60)  # noqa: B023
    time.sleep(5)  # a scaler poll or two reads the Secret


def test_the_operator_uses_every_verb_it_is_granted_and_no_other(
    kubectl: Kubectl, ns: str, redis_server: RedisServer
) -> None:
    exercise(kubectl, ns)
    exercise_rq_scale_in(kubectl, ns, redis_server)
    log = audit_log(kubectl)
    seen, denied = used(log)
    grants = granted(kubectl)
    assert seen, f"no request by {OPERATOR_USER} in {log}"
    assert denied == set(), f"the API server denied the operator: {sorted(denied)}"
    assert seen - grants == set(), "used but not granted"
    assert set(UNUSED_BUT_NEEDED) <= grants, "an allowlisted permission is no longer granted"
    unused = grants - seen - set(UNUSED_BUT_NEEDED)
    print(f"operator used {len(seen)} permissions of {len(grants)} granted: {sorted(seen)}")
    print(f"granted, unused, allowlisted: {sorted(set(UNUSED_BUT_NEEDED) & (grants - seen))}")
    assert unused == set(), f"granted but never used (drop them or justify): {sorted(unused)}"
