"""The chart's aggregated ClusterRoles: namespace users get BackgroundJobs with the
built-in edit and view roles they already have (on a real RBAC authorizer)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.support import Kubectl, chart_template, eventually


@pytest.fixture
def user_roles(kubectl: Kubectl) -> Iterator[str]:
    rendered = chart_template(kubectl, "templates/aggregate-roles.yaml")
    kubectl.run("apply", "-f", "-", stdin=rendered)
    yield rendered
    kubectl.run("delete", "-f", "-", "--ignore-not-found", stdin=rendered, check=False)


def can(kubectl: Kubectl, user: str, verb: str, ns: str, subresource: str = "") -> bool:
    args = ["auth", "can-i", verb, "backgroundjobs.bgjob.dev", "-n", ns, "--as", user]
    if subresource:
        args.append(f"--subresource={subresource}")
    return kubectl.run(*args, check=False).stdout.strip() == "yes"


def test_edit_and_view_users_get_backgroundjobs_but_never_their_status(
    kubectl: Kubectl, ns: str, user_roles: str
) -> None:
    kubectl.run("create", "rolebinding", "alice", "--clusterrole=edit", "--user=alice", "-n", ns)
    kubectl.run("create", "rolebinding", "bob", "--clusterrole=view", "--user=bob", "-n", ns)
    # The aggregation controller folds our roles into edit and view shortly.
    eventually(lambda: can(kubectl, "alice", "create", ns), timeout=60)
    eventually(lambda: can(kubectl, "bob", "list", ns), timeout=60)
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        assert can(kubectl, "alice", verb, ns), verb
    assert not can(kubectl, "alice", "patch", ns, subresource="status")
    for verb in ("get", "list", "watch"):
        assert can(kubectl, "bob", verb, ns), verb
    for verb in ("create", "patch", "delete"):
        assert not can(kubectl, "bob", verb, ns), verb
    # Nothing beyond the namespace the binding is in.
    assert not can(kubectl, "alice", "create", "default")
