"""Store memory benchmark: what the cache holds per child a tenant has padded.

    .venv/bin/python -m benchmarks.store_memory [children] [env_bytes]

No cluster. With tracemalloc, loads ``children`` Deployments owned by cached
BackgroundJobs (10 children each), every one carrying an env value of
``env_bytes`` bytes a tenant added, plus a large last-applied annotation and an
extra status field, then ``children`` more whose owner is not cached (held aside,
bounded per namespace). Prints the bytes the store holds per child, measured after
the input bodies are freed, so only what the store keeps counts.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from typing import Any

from bgjob.store import Store

NS = "tenant"


def _bgjob(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "bgjob.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": f"b{i}", "namespace": NS, "uid": f"uid-b{i}", "resourceVersion": "1"},
        "spec": {"image": "worker:1", "trigger": {"continuous": {}}},
    }


def _child(i: int, owner_uid: str, env_bytes: int) -> dict[str, Any]:
    pad = "x" * (env_bytes - 8) + f"{i:08d}"  # a distinct string per child
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"d{i}",
            "namespace": NS,
            "uid": f"uid-d{i}",
            "resourceVersion": str(i),
            "labels": {"app.kubernetes.io/instance": f"d{i}", "tenant/x": "y"},
            "annotations": {
                "bgjob.dev/spec-hash": "0123456789abcdef",
                "kubectl.kubernetes.io/last-applied-configuration": pad,
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            "ownerReferences": [
                {"kind": "BackgroundJob", "name": "b", "uid": owner_uid, "controller": True}
            ],
        },
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "image": "worker:1",
                            "env": [{"name": "MODE", "value": "1"}, {"name": "PAD", "value": pad}],
                        }
                    ]
                }
            },
        },
        "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "tenant": pad},
    }


def held_bytes_per_child(children: int = 2_000, env_bytes: int = 100_000) -> float:
    """Bytes the store holds per child (owned and held-aside ones together)."""
    gc.collect()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = Store()
        for i in range(children // 10 + 1):
            store.put_bgjob(_bgjob(i))
        for i in range(children):
            store.put_child(_child(i, f"uid-b{i // 10}", env_bytes), "Deployment", "apps/v1")
        for i in range(children):
            store.put_child(_child(children + i, f"nobody-{i}", env_bytes), "Deployment", "apps/v1")
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        assert store.sizes()[1] == children
        return held / (children + store.pending())
    finally:
        if started:
            tracemalloc.stop()


def main(argv: list[str]) -> None:
    children = int(argv[0]) if argv else 2_000
    env_bytes = int(argv[1]) if len(argv) > 1 else 100_000
    per_child = held_bytes_per_child(children, env_bytes)
    padded_mb = 2 * children * env_bytes * 3 / 1e6
    print(
        f"children={children} (+{children} orphans) env_bytes={env_bytes} "
        f"input≈{padded_mb:.0f}MB held_per_child={per_child:.0f}B"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
