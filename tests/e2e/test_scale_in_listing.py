"""What a scale-in reads of the namespace's pods (real API server): metadata only, in
small pages, at most what it asked for, however many and however big the pods a tenant
created with the pool's labels."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from bgjob.kube import Kube, load_config
from tests.e2e.support import Kubectl

LABELS = {"app.kubernetes.io/instance": "emails", "bgjob.dev/name": "emails"}


@pytest.fixture
def crowded(kubectl: Kubectl) -> Iterator[str]:
    """A namespace with 12 Pending pods carrying the pool's labels and a 1 MB env value."""
    name = f"e2e-list-{secrets.token_hex(3)}"
    kubectl.run("create", "namespace", name)
    big = "x" * 1_000_000
    for i in range(12):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"fake-{i}", "labels": LABELS},
            "spec": {
                "nodeSelector": {"nowhere": "x"},
                "containers": [{"name": "c", "image": "x", "env": [{"name": "E", "value": big}]}],
            },
        }
        kubectl.run("apply", "--server-side", "-n", name, "-f", "-", stdin=json.dumps(pod))
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def test_scale_in_lists_pod_metadata_only_and_stops_at_what_it_needs(
    kubectl: Kubectl, crowded: str
) -> None:
    kube = Kube(load_config(user_agent="e2e-list"))
    sent: list[int] = []
    real = kube.list_page

    def counted(*args: object, **kwargs: object) -> dict[str, object]:
        page = real(*args, **kwargs)  # type: ignore[arg-type]
        sent.append(len(json.dumps(page)))
        return page

    kube.list_page = counted  # type: ignore[method-assign]
    selector = ",".join(f"{k}={v}" for k, v in sorted(LABELS.items()))
    pods = kube.list_metadata("Pod", selector, crowded, most=8, page=3)
    assert len(pods) == 8, "stops after what it asked for"
    assert all("spec" not in p and p["metadata"]["name"].startswith("fake-") for p in pods)
    assert len(sent) == 3, "small pages, none beyond the cap"
    assert sum(sent) < 64 * 1024, f"read {sum(sent)} bytes of 8 pods' metadata"
