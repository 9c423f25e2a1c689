"""The local test cluster keeps its fake nodes Ready: a node that misses its
heartbeat for the controller manager's grace period goes NotReady, and every pod
on it is marked not Ready for good (kwok readies only Pending pods), which
shows as Deployments that never become available again."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

HACK = Path(__file__).resolve().parents[2] / "hack"


def _stages() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((HACK / "kwok" / "stages.yaml").read_text()) if d]


def _grace_seconds() -> float:
    cluster = (HACK / "cluster.py").read_text()
    found = re.search(r'"--node-monitor-grace-period=(\d+)(m|s)"', cluster)
    assert found, "hack/cluster.py sets no --node-monitor-grace-period"
    return float(found[1]) * (60 if found[2] == "m" else 1)


def test_the_fake_nodes_beat_several_times_within_the_grace_period() -> None:
    cluster = (HACK / "cluster.py").read_text()
    # No Leases for kwok's nodes: the node status update is the only heartbeat.
    assert "--node-lease-duration-seconds" not in cluster
    beats = [
        s
        for s in _stages()
        if s["spec"]["resourceRef"]["kind"] == "Node"
        and any(
            e["operator"] == "In" and e["values"] == ["True"]
            for e in s["spec"]["selector"]["matchExpressions"]
        )
    ]
    assert [s["metadata"]["name"] for s in beats] == ["node-heartbeat"]
    delay = beats[0]["spec"]["delay"]
    longest = max(delay["durationMilliseconds"], delay["jitterDurationMilliseconds"]) / 1000
    assert longest * 4 <= _grace_seconds(), (longest, _grace_seconds())
