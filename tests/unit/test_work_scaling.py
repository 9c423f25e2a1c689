"""Work-aware queues (rq): the backlog read from RQ's keys, busy workers kept, the
cooldown counted from the last job started or finished, scheduled jobs woken on time."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bgjob.api.models import InvalidSpec, parse
from bgjob.scaling.decision import (
    Activity,
    Limits,
    desired_work_replicas,
    due_soon,
    next_wake,
)
from bgjob.scaling.network import NetworkPolicy
from bgjob.scaling.probes import (
    CELERY_GONE,
    CELERY_NOT_READ,
    CELERY_ROUTE_MANY,
    CELERY_ROUTE_MAYBE,
    CELERY_ROUTE_NONE,
    CELERY_ROUTE_OTHER,
    CELERY_ROUTE_OURS,
    QueueRef,
    RQQueueReply,
    Work,
    celery_owned,
    celery_route,
    celery_unacked,
    celery_work,
    rq_work,
)
from bgjob.scaling.scale_in import (
    BUSY_COST,
    DELETION_COST,
    IDLE_COST,
    busy_floor,
    deletion_cost_patches,
    owned_pods,
    owned_replicasets,
    pod_hostname,
    pool_pod,
)
from bgjob.scaling.scaler import Scaler

LIMITS = Limits(
    min_replicas=0,
    max_replicas=10,
    target_per_replica=5,
    activation_threshold=0,
    cooldown_seconds=60,
)


def worker(
    state: str | None, host: str = "", beat: str | None = "1970-01-01T00:10:00.000000Z"
) -> dict[str, bytes]:
    """The fields the probe read of a worker hash (empty: the hash expired); the default
    heartbeat is fresh at now=600."""
    if state is None:
        return {}
    fields = {"state": state, "hostname": host, "last_heartbeat": beat or ""}
    return {k: v.encode(errors="surrogateescape") for k, v in fields.items() if v}


def queue(
    queued: int = 0,
    started: int = 0,
    due: int = 0,
    future: list[tuple[bytes, float]] | None = None,
    wip: list[bytes] | None = None,
    finished: int = 0,
    failed: int = 0,
) -> RQQueueReply:
    return RQQueueReply(queued, started, due, future or [], wip or [], finished, failed)


def test_rq_backlog_is_queued_plus_in_flight_plus_due_over_all_queues() -> None:
    work = rq_work(
        now=1000.0,
        queues=[
            queue(3, 2, 1, [(b"a", 1010.0), (b"b", 3600.0)]),
            queue(1, 0, 4, [(b"c", 1005.0)]),
        ],
        workers={},
    )
    assert work.backlog == 3 + 1 + 2 + 0 + 1 + 4
    assert work.due_times == (1005.0, 1010.0, 3600.0)
    assert work.busy == frozenset()


def test_rq_busy_workers_are_named_by_their_pod_hostname_and_dead_ones_ignored() -> None:
    work = rq_work(
        now=600.0,
        queues=[queue(started=2)],
        workers={
            "rq:worker:9f3a": worker("busy", host="emails-7d9-abcde"),
            "rq:worker:emails-7d9-fghij": worker("busy"),  # no hostname: its name
            "rq:worker:idle1": worker("idle", host="emails-7d9-zzzzz"),
            "rq:worker:gone": worker(None),  # its hash expired: a dead worker
            # Killed mid-job 10 minutes ago: its hash outlives it, its heartbeat stopped.
            "rq:worker:killed": worker("busy", "p9", beat="1970-01-01T00:00:00.000000Z"),
            "rq:worker:recent": worker("busy", "p8", beat="1970-01-01T00:09:00.000000Z"),
            # Not a name a pod can have: never a busy pod.
            "rq:worker:x": worker("busy", "Laptop_of_Dev"),
            "rq:worker:y": worker("busy", "a" * 254),
        },
    )
    assert work.busy == {"emails-7d9-abcde", "emails-7d9-fghij", "p8"}


@pytest.mark.parametrize(
    "beat",
    [None, "garbage", "9999-12-31T23:59:59.000000Z", "1970-01-01T00:11:01.000000Z", "\udcff"],
)
def test_a_busy_worker_without_a_believable_heartbeat_is_not_busy(beat: str | None) -> None:
    """Absent, unreadable or over a minute in the future (now is 00:10:00): nothing
    proves the worker lives, so it holds no replica up forever."""
    work = rq_work(600.0, [queue(started=1)], {"rq:worker:p": worker("busy", "p", beat=beat)})
    assert work.busy == frozenset()


def test_only_busy_workers_that_are_pods_of_this_pool_hold_replicas_up() -> None:
    busy = frozenset({"emails-5d8f-a", "laptop-of-dev", "vm-1", "vm-2"})
    pods = frozenset({"emails-5d8f-a", "emails-5d8f-b"})
    assert busy_floor(busy, pods, 10) == 1
    assert busy_floor(busy, frozenset(), 10) == 0
    assert busy_floor(busy, busy, 3) == 3


# A BackgroundJob name of the longest allowed length (52), its Deployment's ReplicaSet
# (name + "-" + a pod-template-hash of up to 10 characters) and the pods it names.
LONG = "welcome-emails-for-every-new-customer-of-the-shop-eu"
LONG_RS = f"{LONG}-6d9f7c8b4d"


@pytest.mark.parametrize(
    ("pod", "hostname"),
    [
        ("emails-5d8f-abcde", "emails-5d8f-abcde"),
        # The API server cuts a generated name's base to 58 characters before its 5
        # random ones: the ReplicaSet's pods of a 52-character BackgroundJob are 63 long.
        (f"{LONG_RS}-"[:58] + "x7k2p", f"{LONG_RS}-"[:58] + "x7k2p"),
        (f"{LONG}-0", f"{LONG}-0"),  # a singleton's StatefulSet pod
        # Longer names (a pod named by hand, a longer controller's): the kubelet's hostname
        # is the first 63 characters, "-" and "." stripped at the end.
        (f"{LONG_RS}-x7k2p", LONG_RS),
        ("a" * 62 + "-b", "a" * 62),
        ("a" * 61 + ".-b", "a" * 61),
        ("b" * 70, "b" * 63),
    ],
)
def test_a_pods_hostname_is_its_name_as_the_kubelet_cuts_it(pod: str, hostname: str) -> None:
    assert len(LONG) == 52
    assert pod_hostname(pod) == hostname


def test_busy_workers_of_pods_with_names_over_63_characters_are_matched() -> None:
    """RQ records socket.gethostname(): the cut name, never a name over 63 characters."""
    pods = [pod(f"{LONG_RS}-x7k2p"), pod(f"{LONG_RS}-q9z4m")]
    busy = frozenset({LONG_RS})  # both pods have this hostname: both hold a job
    assert busy_floor(busy, frozenset(p["metadata"]["name"] for p in pods), 10) == 2
    assert set(deletion_cost_patches(pods, busy).values()) == {BUSY_COST}


@pytest.mark.parametrize(
    ("hostname", "workload", "kind", "ours"),
    [
        ("emails-5d8f9c7b4-abcde", "emails", "Deployment", True),
        ("emails-5d8f9c7b4-abcde", "emails", "StatefulSet", False),
        ("emails-x-5d8f9c7b4-abcde", "emails", "Deployment", False),  # pool emails-x
        ("emails-abcde", "emails", "Deployment", False),
        ("emails-5d8f9c7b4-ab_de", "emails", "Deployment", False),
        ("laptop-of-dev", "emails", "Deployment", False),
        (f"{LONG_RS}-"[:58] + "x7k2p", LONG, "Deployment", True),  # base cut to 58
        (f"{LONG_RS}-x7k2p", LONG, "Deployment", False),  # no generated name is this long
        ("emails-0", "emails", "StatefulSet", True),
        ("emails-12", "emails", "StatefulSet", True),
        ("emails-01", "emails", "StatefulSet", False),
        ("emails-x-0", "emails", "StatefulSet", False),
    ],
)
def test_busy_workers_shown_are_those_named_like_the_pools_pods(
    hostname: str, workload: str, kind: str, ours: bool
) -> None:
    assert pool_pod(hostname, workload, kind) is ours


@pytest.mark.parametrize(
    ("change", "same"),
    [
        ({"wip": [b"job-2"]}, False),  # the busy worker took another job
        ({"finished": 8}, False),  # a job finished
        ({"failed": 1}, False),  # a job failed
        ({"started": 0, "wip": []}, False),  # the worker went idle
        ({}, True),  # nothing happened
    ],
)
def test_rq_activity_changes_when_a_job_starts_or_finishes(
    change: dict[str, Any], same: bool
) -> None:
    base: dict[str, Any] = {"started": 1, "wip": [b"job-1"], "finished": 7}

    def read(**fields: Any) -> object:
        return rq_work(0.0, [queue(**{**base, **fields})], {}).activity

    assert (read() == read(**change)) is same


def test_rq_activity_does_not_depend_on_which_workers_were_read() -> None:
    """More workers registered than a probe reads: each probe reads another sample, and
    an idle pool must still look idle (the cooldown ends)."""
    idle = {f"rq:worker:w{i}": worker("idle", f"w{i}") for i in range(600)}
    keys = sorted(idle)
    first = rq_work(0.0, [queue(finished=3)], {k: idle[k] for k in keys[:512]})
    second = rq_work(0.0, [queue(finished=3)], {k: idle[k] for k in keys[88:]})
    assert first.activity == second.activity


def test_rq_activity_keeps_only_short_digests_of_job_ids() -> None:
    big = [b"x" * 2**20 + bytes([i]) for i in range(4)]
    work = rq_work(0.0, [queue(started=4, wip=big)], {})
    assert len(repr(work.activity)) < 200


# --- the decision ----------------------------------------------------------------------

# Each row: polls as (time, backlog, busy, fingerprint); the replicas after each poll.
CASES: dict[str, tuple[int, list[tuple[float, int, int, object]], list[int]]] = {
    "up at once with the backlog": (0, [(0, 12, 0, "a")], [3]),
    "idle stays at zero": (0, [(0, 0, 0, None), (100, 0, 0, None)], [0, 0]),
    "never below the busy workers, even past the cooldown": (
        4,
        [(0, 3, 3, "a"), (100, 3, 3, "a"), (200, 3, 3, "a")],
        [4, 3, 3],
    ),
    "in-flight jobs keep replicas through the cooldown while they start and finish": (
        4,
        [(0, 8, 4, "a"), (50, 4, 4, "b"), (100, 2, 2, "c"), (150, 1, 1, "d")],
        [4, 4, 4, 4],
    ),
    "the cooldown counts from the last job finished, not the last non-zero poll": (
        2,
        # Work ends at t=100 (fingerprint changes to "done"); backlog 0 from t=100.
        [(0, 2, 2, "a"), (100, 0, 0, "done"), (150, 0, 0, "done"), (161, 0, 0, "done")],
        [2, 2, 2, 0],
    ),
    "a long job with no start or finish lets idle workers go after the cooldown": (
        3,
        [(0, 1, 1, "long"), (30, 1, 1, "long"), (61, 1, 1, "long")],
        [3, 3, 1],
    ),
    "no data keeps what runs": (3, [(0, None, 0, None), (500, None, 0, None)], [3, 3]),  # type: ignore[list-item]
    "busy above concurrency is capped": (2, [(0, 0, 50, "a"), (100, 0, 50, "a")], [2, 2]),
}


@pytest.mark.parametrize("case", CASES)
def test_work_aware_decision(case: str) -> None:
    current, polls, expected = CASES[case]
    limits = Limits(0, 10 if "capped" not in case else 2, 5, 0, 60)
    activity = Activity()
    got = []
    for now, backlog, busy, fingerprint in polls:
        current = desired_work_replicas(backlog, busy, fingerprint, current, limits, activity, now)
        got.append(current)
    assert got == expected


@given(
    st.lists(
        st.tuples(st.integers(0, 100), st.integers(0, 20), st.integers(0, 3), st.floats(0.1, 100)),
        min_size=1,
        max_size=30,
    ),
    st.integers(0, 3),
    st.integers(1, 12),
)
def test_work_aware_replicas_stay_in_bounds_and_cover_the_busy_workers(
    polls: list[tuple[int, int, int, float]], fewest: int, most: int
) -> None:
    limits = Limits(min(fewest, most), most, 5, 0, 30)
    activity, current, now = Activity(), 0, 0.0
    for backlog, busy, fingerprint, step in polls:
        now += step
        current = desired_work_replicas(backlog, busy, fingerprint, current, limits, activity, now)
        assert limits.min_replicas <= current <= limits.max_replicas
        assert current >= min(busy, most)


@pytest.mark.parametrize(
    ("due", "now", "lead", "soon", "wake"),
    [
        ((), 100.0, 5.0, 0, None),
        ((110.0,), 100.0, 5.0, 0, 105.0),  # wake 5 s before it is due
        ((104.0,), 100.0, 5.0, 1, None),  # within the lead: counts as backlog now
        ((104.0, 3700.0), 100.0, 5.0, 1, 3695.0),  # a job due in an hour wakes nobody yet
        ((110.0,), 100.0, 0.0, 0, 110.0),
    ],
)
def test_scheduled_jobs_count_within_their_lead_and_wake_the_scaler_at_it(
    due: tuple[float, ...], now: float, lead: float, soon: int, wake: float | None
) -> None:
    assert due_soon(due, now, lead) == soon
    assert next_wake(due, now, lead) == wake


# --- the API ---------------------------------------------------------------------------


def bgjob(rq: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "bgjob.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": "emails", "namespace": "shop", "uid": "u", "generation": 1},
        "spec": {"image": "app:1", "trigger": {"queue": {"rq": rq}}, "concurrency": 4},
    }


def test_an_rq_queue_trigger_is_accepted_with_its_defaults() -> None:
    bgj = parse(bgjob({"url": "redis://redis.shop:6379/0", "queues": ["high", "default"]}))
    queue = bgj.spec.trigger.queue
    assert queue is not None and queue.rq is not None
    assert queue.backend == "rq"
    assert queue.rq.schedule_lead_seconds == 5


@pytest.mark.parametrize(
    ("rq", "field"),
    [
        ({"url": "redis://app:s3cret@redis:6379/0", "queues": ["q"]}, "spec.trigger.queue.rq.url"),
        ({"url": "redis://redis:6379/0?password=x", "queues": ["q"]}, "spec.trigger.queue.rq.url"),
        ({"url": "amqp://mq:5672/", "queues": ["q"]}, "spec.trigger.queue.rq.url"),
        ({"url": "redis://redis:6379/0", "queues": []}, "spec.trigger.queue.rq.queues"),
        ({"url": "redis://redis:6379/0", "queues": ["a b"]}, "spec.trigger.queue.rq.queues"),
        ({"url": "redis://redis:6379/0", "queues": ["a", "a"]}, "spec.trigger.queue.rq.queues"),
        ({"queues": ["q"]}, "spec.trigger.queue.rq"),
        (
            {"url": "redis://r:6379/0", "queues": ["q"], "scheduleLeadSeconds": 301},
            "spec.trigger.queue.rq.scheduleLeadSeconds",
        ),
    ],
)
def test_a_bad_rq_trigger_is_rejected_naming_the_field(rq: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as error:
        parse(bgjob(rq))
    assert field in str(error.value)


# --- busy-aware scale-in ---------------------------------------------------------------


DEPLOYMENT_UID = "d-uid"


def owner(kind: str, uid: str, controller: bool = True, api: str = "apps/v1") -> dict[str, Any]:
    return {
        "apiVersion": api,
        "kind": kind,
        "name": "emails-5d8f",
        "uid": uid,
        "controller": controller,
    }


def replicaset(uid: str, template_hash: str, *owners: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"emails-{template_hash}",
            "uid": uid,
            "labels": {"pod-template-hash": template_hash},
            "ownerReferences": list(owners),
        }
    }


def pod(name: str, cost: str | None = None, rs_uid: str = "rs-1", **meta: Any) -> dict:
    annotations = {} if cost is None else {DELETION_COST: cost}
    return {
        "metadata": {
            "name": name,
            "labels": {"pod-template-hash": "5d8f"},
            "annotations": annotations,
            "ownerReferences": [owner("ReplicaSet", rs_uid)],
            **meta,
        }
    }


def test_the_deployments_replicasets_are_known_by_their_controllers_uid() -> None:
    sets = [
        replicaset("rs-1", "5d8f", owner("Deployment", DEPLOYMENT_UID)),
        # A standalone ReplicaSet the tenant named like the Deployment's.
        replicaset("rs-2", "abc"),
        replicaset("rs-3", "abd", owner("Deployment", "another-uid")),
        replicaset("rs-4", "abe", owner("Deployment", DEPLOYMENT_UID, controller=False)),
        replicaset("rs-5", "abf", owner("Deployment", DEPLOYMENT_UID, api="extensions/v1")),
    ]
    assert owned_replicasets(sets, DEPLOYMENT_UID) == {"rs-1": "5d8f"}


def test_idle_pods_get_the_lowest_deletion_cost_and_busy_ones_the_highest() -> None:
    pods = owned_pods([pod("emails-5d8f-a"), pod("emails-5d8f-b"), pod("emails-5d8f-c")], {"rs-1"})
    patches = deletion_cost_patches(pods, frozenset({"emails-5d8f-b"}))
    assert patches == {
        "emails-5d8f-a": IDLE_COST,
        "emails-5d8f-b": BUSY_COST,
        "emails-5d8f-c": IDLE_COST,
    }
    assert int(IDLE_COST) < int(BUSY_COST)


@pytest.mark.parametrize(
    ("the_pod", "why"),
    [
        (pod("x", rs_uid="rs-2"), "another ReplicaSet (a standalone one named emails-abc)"),
        (pod("x", deletionTimestamp="2026-11-23T00:00:00Z"), "already going"),
        ({"metadata": {"name": "x", "labels": {"app": "emails"}}}, "a bare pod"),
        (
            {"metadata": {"name": "x", "ownerReferences": [owner("Job", "rs-1", api="batch/v1")]}},
            "a Job's pod whose owner has the ReplicaSet's uid",
        ),
        (
            {"metadata": {"name": "x", "ownerReferences": [owner("ReplicaSet", "rs-1", False)]}},
            "not its controller",
        ),
    ],
)
def test_only_this_deployments_live_pods_are_taken(the_pod: dict[str, Any], why: str) -> None:
    assert owned_pods([the_pod], {"rs-1"}) == [], why


def test_a_pod_already_marked_right_is_not_written_again() -> None:
    assert deletion_cost_patches([pod("x", cost=IDLE_COST)], frozenset()) == {}


def test_a_pod_that_became_busy_is_marked_again() -> None:
    patches = deletion_cost_patches([pod("p", cost=IDLE_COST)], frozenset({"p"}))
    assert patches == {"p": BUSY_COST}


# --- celery ----------------------------------------------------------------------------


def test_celery_backlog_is_waiting_at_every_priority_plus_unacknowledged() -> None:
    work = celery_work([4, 1, 0, 2], unacked=3, latest=[(b"tag-9", 1000.0)])
    assert work.backlog == 4 + 1 + 0 + 2 + 3
    assert work.busy == frozenset()  # Celery keeps no worker registry in Redis


@pytest.mark.parametrize(
    ("after", "same"),
    [
        ((3, [(b"tag-9", 1000.0)]), True),  # nothing delivered or acknowledged
        ((2, [(b"tag-9", 1000.0)]), False),  # a task acknowledged (finished, acks_late)
        ((3, [(b"tag-10", 1001.0)]), False),  # a task delivered to a worker
    ],
)
def test_celery_activity_changes_on_every_delivery_and_acknowledgement(
    after: tuple[int, list[tuple[bytes, float]]], same: bool
) -> None:
    before = celery_work([0], 3, [(b"tag-9", 1000.0)]).activity
    assert (celery_work([0], *after).activity == before) is same


def unacked(exchange: str, routing_key: str) -> bytes:
    """One entry of kombu's ``unacked`` hash: JSON [message, exchange, routing key]."""
    message = {"body": "e30=", "properties": {"delivery_tag": "t"}, "headers": {}}
    return json.dumps([message, exchange, routing_key]).encode()


@pytest.mark.parametrize(
    ("tail", "route"),
    [
        (unacked("emails", "emails"), ("emails", "emails")),
        (unacked("", "emails"), ("", "emails")),
        (unacked("media", "media.video"), ("media", "media.video")),
        # Escapes inside the strings (kombu's JSON is ASCII, non-ASCII escaped as \uXXXX).
        (unacked('ex"q\\', 'caf\u00e9 \\"'), ('ex"q\\', 'caf\u00e9 \\"')),
        (b'[{"b": 1}, "a" , "b" ]\n', ("a", "b")),
        # Only the end of a big entry is read: the cut falls inside the message.
        (unacked("q", "q")[-40:], ("q", "q")),
        (b'\x80\x81yte", "q", "q"]', ("q", "q")),
        # Not kombu's: no full parse of the tenant's JSON, nothing raised.
        (b"[" * 16_000, None),
        (b"{not json", None),
        (b'["m", 1, 2]', None),
        (b'["m", "q", 2]', None),
        (b'"q", "q"]', None),  # no message before the two strings
        (b'["m", "q" "q"]', None),
        (b'["m", "q", "\\u12"]', None),
        (b'["m", "q", "q"', None),
        (b"", None),
    ],
)
def test_celery_route_is_read_from_the_end_of_an_unacked_entry(
    tail: bytes, route: tuple[str, str] | None
) -> None:
    assert celery_route(tail) == route


@pytest.mark.parametrize(
    ("exchange", "routing_key", "route", "owned"),
    [
        # The anonymous exchange routes to the queue named by the routing key.
        ("", "emails", None, True),
        ("", "reports", None, False),
        # A named exchange: its bindings in _kombu.binding.<exchange> decide.
        ("media", "media.video", CELERY_ROUTE_OURS, True),
        ("emails", "emails", CELERY_ROUTE_OTHER, False),  # named like the queue, not bound
        ("media", "media.audio", CELERY_ROUTE_OTHER, False),
        # Cannot tell: counted, said.
        ("emails", "emails", CELERY_ROUTE_NONE, None),
        ("media", "x", CELERY_ROUTE_NONE, None),
        ("media", "x", CELERY_ROUTE_MANY, None),
        ("events", "emails.new", CELERY_ROUTE_MAYBE, None),
        ("events", "emails.new", None, None),
    ],
)
def test_celery_owner_follows_kombus_routing(
    exchange: str, routing_key: str, route: int | None, owned: bool | None
) -> None:
    assert celery_owned("emails", exchange, routing_key, route) is owned


@pytest.mark.parametrize(
    ("indexed", "read", "counted", "unknown"),
    [
        (0, [], 0, 0),
        # Celery's default routing, bound or through the anonymous exchange.
        (2, [unacked("emails", "emails"), unacked("", "emails")], 2, 0),
        (1, [unacked("mail", "send")], 1, 0),  # bound by another routing key
        # Another queue's tasks in hand on the same database do not count.
        (3, [unacked("reports", "reports")] * 2 + [unacked("emails", "emails")], 1, 0),
        # Not read (tag or entry too big) or not kombu's entry: counted, said.
        (2, [CELERY_NOT_READ, b"{not json"], 2, 2),
        (2, [b'["m", 1, 2]', unacked("reports", "reports")], 1, 1),
        (1, [unacked("nobind", "emails")], 1, 1),  # no binding found
        # Acknowledged meanwhile, or an index entry whose field is gone: not in hand.
        (3, [CELERY_GONE, CELERY_GONE, unacked("emails", "emails")], 1, 0),
        # Index entries beyond those read: counted, said, whatever was read.
        (200, [unacked("reports", "reports")] * 128, 72, 72),
        (328, [CELERY_GONE] * 128, 200, 200),
    ],
)
def test_celery_unacknowledged_messages_count_for_their_own_queue_only(
    indexed: int, read: list[bytes | int], counted: int, unknown: int
) -> None:
    routes = {
        ("emails", "emails"): CELERY_ROUTE_OURS,
        ("mail", "send"): CELERY_ROUTE_OURS,
        ("reports", "reports"): CELERY_ROUTE_OTHER,
        ("nobind", "emails"): CELERY_ROUTE_NONE,
    }
    assert celery_unacked("emails", indexed, read, routes) == (counted, unknown)


def test_celery_messages_not_attributed_are_said_in_status() -> None:
    assert celery_work([0], 3, [], unattributed=0).note is None
    note = celery_work([0], 3, [], unattributed=2).note
    assert note is not None and note.startswith("2 unacknowledged message(s)")


def test_a_celery_queue_trigger_is_accepted_and_defaults_to_the_celery_queue() -> None:
    body = bgjob({})
    body["spec"]["trigger"]["queue"] = {"celery": {"url": "redis://redis.shop:6379/0"}}
    queue = parse(body).spec.trigger.queue
    assert queue is not None and queue.celery is not None
    assert queue.backend == "celery" and queue.celery.queue == "celery"


# --- the scaler: a scheduled job wakes its target, and only it --------------------------


class ScheduledProbe:
    """An RQ pool with one job scheduled at ``due`` (wall time); counts its reads."""

    def __init__(self, due: float) -> None:
        self.due, self.reads = due, []  # type: ignore[var-annotated]

    def backlog(self, queue: QueueRef, timeout: float) -> Work:
        now = time.time()
        self.reads.append(now)
        if now >= self.due:
            return Work(backlog=1, activity="due")
        return Work(backlog=0, due_times=(self.due,), activity="waiting")

    def retain(self, url: str, user: Hashable) -> None: ...

    def release(self, url: str, user: Hashable) -> None: ...

    def close(self) -> None: ...


def _rq_bgj(name: str, lead: int, interval: int = 60) -> Any:
    body = bgjob({"url": f"redis://{name}:6379/0", "queues": ["q"], "scheduleLeadSeconds": lead})
    body["metadata"]["name"] = name
    body["spec"]["trigger"]["queue"]["pollingIntervalSeconds"] = interval
    return parse(body)


def test_a_scheduled_job_wakes_its_pool_at_its_lead_without_polling_faster() -> None:
    scaler = Scaler(None, lambda _: None, policy=NetworkPolicy())  # type: ignore[arg-type]
    # Polled every 8 s: a scheduled wake comes at least 2 s after a poll, so the job is
    # due 3.5 s after the first poll plus its 1 s lead. Start just after a regular tick
    # (a multiple of 8 s on the scaler's clock), so none falls in the 5 s watched.
    time.sleep(8 - scaler.clock() % 8 + 0.05)
    soon, later = ScheduledProbe(time.time() + 4.5), ScheduledProbe(time.time() + 3600)
    probes = {"redis://soon:6379/0": soon, "redis://later:6379/0": later}

    class ByUrl(ScheduledProbe):
        def backlog(self, queue: QueueRef, timeout: float) -> Work:
            return probes[queue.url].backlog(queue, timeout)

    scaler.probes = {"rq": ByUrl(0)}
    scaler.track(_rq_bgj("soon", lead=1, interval=8), 0)
    scaler.track(_rq_bgj("later", lead=1, interval=8), 0)

    async def scenario() -> None:
        task = asyncio.create_task(scaler.run())
        await asyncio.sleep(5.0)
        task.cancel()

    try:
        asyncio.run(scenario())
    finally:
        scaler.close()
    # Polled at start, then at due - lead (not up to 8 s later), one read more than a
    # pool with nothing due soon (both also poll on their regular 8 s tick).
    assert any(abs(read - (soon.due - 1)) < 0.3 for read in soon.reads), soon.reads
    assert len(soon.reads) == len(later.reads) + 1, (soon.reads, later.reads)
    view = scaler.view(("shop", "soon"))
    assert view is not None and view.replicas == 1  # the job within its lead counts
    # A job due in an hour keeps nobody up.
    later_view = scaler.view(("shop", "later"))
    assert later_view is not None and later_view.replicas == 0


# --- the example -------------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rq"


def test_the_rq_example_runs_rqs_scheduler_in_the_workers_it_scales() -> None:
    bgj = parse(yaml.safe_load((EXAMPLE / "backgroundjob.yaml").read_text()))
    queue = bgj.spec.trigger.queue
    assert queue is not None and queue.rq is not None
    assert bgj.spec.command is not None and "--with-scheduler" in bgj.spec.command
    assert set(queue.rq.queues) <= set(bgj.spec.command)


def test_the_rq_producer_uses_perform_perform_in_and_perform_at() -> None:
    source = (EXAMPLE / "producer.py").read_text()
    compile(source, "producer.py", "exec")
    for call in ("queue.enqueue(", "queue.enqueue_in(", "queue.enqueue_at("):
        assert call in source
    assert "def send_welcome_email(" in (EXAMPLE / "welcome.py").read_text()


class BusyProbe(ScheduledProbe):
    """An empty RQ queue whose registry names busy workers, some not pods of the pool."""

    def backlog(self, queue: QueueRef, timeout: float) -> Work:
        return Work(backlog=0, busy=frozenset({"emails-a", "laptop", "vm-1"}), activity="same")


def test_busy_workers_that_are_not_the_pools_pods_do_not_hold_it_up() -> None:
    scaler = Scaler(None, lambda _: None, policy=NetworkPolicy())  # type: ignore[arg-type]
    scaler.probes = {"rq": BusyProbe(0)}
    body = bgjob({"url": "redis://r:6379/0", "queues": ["q"]})
    body["spec"]["trigger"]["queue"].update(pollingIntervalSeconds=1, cooldownSeconds=0)
    scaler.track(parse(body), 3)
    scaler.note_pods(("shop", "emails"), frozenset({"emails-a", "emails-b", "emails-c"}))

    async def scenario() -> None:
        task = asyncio.create_task(scaler.run())
        await asyncio.sleep(1.5)
        task.cancel()

    try:
        asyncio.run(scenario())
    finally:
        scaler.close()
    view = scaler.view(("shop", "emails"))
    assert view is not None and view.replicas == 1  # emails-a only, not laptop or vm-1


class CrowdedScheduleProbe(ScheduledProbe):
    """A job due every 20 ms from 1 s on: each poll sees another one about to enter its
    lead."""

    def backlog(self, queue: QueueRef, timeout: float) -> Work:
        now = time.time()
        self.reads.append(now)
        start = max(self.due, now)
        return Work(backlog=0, due_times=tuple(start + i * 0.02 for i in range(64)), activity=1)


def test_jobs_due_milliseconds_apart_do_not_turn_into_a_poll_each() -> None:
    scaler = Scaler(None, lambda _: None, policy=NetworkPolicy())  # type: ignore[arg-type]
    probe, later = CrowdedScheduleProbe(time.time() + 1), ScheduledProbe(time.time() + 3600)
    probes = {"redis://tick:6379/0": probe, "redis://later:6379/0": later}

    class ByUrl(ScheduledProbe):
        def backlog(self, queue: QueueRef, timeout: float) -> Work:
            return probes[queue.url].backlog(queue, timeout)

    scaler.probes = {"rq": ByUrl(0)}
    scaler.track(_rq_bgj("tick", lead=0, interval=60), 0)
    scaler.track(_rq_bgj("later", lead=0, interval=60), 0)

    async def scenario() -> None:
        task = asyncio.create_task(scaler.run())
        await asyncio.sleep(5.0)
        task.cancel()

    try:
        asyncio.run(scenario())
    finally:
        scaler.close()
    # pollingIntervalSeconds 60: a wake at most every 15 s (interval / 4), so no more
    # reads than a pool with nothing due (its regular ticks only).
    assert len(probe.reads) == len(later.reads) <= 2, (probe.reads, later.reads)
    view = scaler.view(("shop", "tick"))
    # The 64 jobs due within the gap count at once: workers run when they are due.
    assert view is not None and view.backlog == 64 and view.replicas == 4


def test_pools_reading_one_queue_share_the_probe_of_a_scheduled_wake() -> None:
    scaler = Scaler(None, lambda _: None, policy=NetworkPolicy())  # type: ignore[arg-type]
    time.sleep(8 - scaler.clock() % 8 + 0.05)  # no regular 8 s tick in the 5 s watched
    probe = ScheduledProbe(time.time() + 4.5)
    scaler.probes = {"rq": probe}
    for name in ("a", "b", "c"):
        body = bgjob({"url": "redis://shared:6379/0", "queues": ["q"], "scheduleLeadSeconds": 1})
        body["metadata"]["name"] = name
        body["spec"]["trigger"]["queue"]["pollingIntervalSeconds"] = 8
        scaler.track(parse(body), 0)

    async def scenario() -> None:
        task = asyncio.create_task(scaler.run())
        await asyncio.sleep(5.0)
        task.cancel()

    try:
        asyncio.run(scenario())
    finally:
        scaler.close()
    # One read at start and one at the wake, for the three of them.
    assert len(probe.reads) == 2, probe.reads


def test_the_last_activity_shown_is_the_wall_time_of_the_last_job_start_or_finish() -> None:
    wall = [1_764_000_000.0]
    scaler = Scaler(None, lambda _: None, policy=NetworkPolicy(), wall=lambda: wall[0])  # type: ignore[arg-type]
    scaler.track(parse(bgjob({"url": "redis://r:6379/0", "queues": ["q"]})), 1)
    target = scaler._targets[("shop", "emails")]
    try:
        scaler._update(target, Work(backlog=1, activity="job-1 started"), None)
        first = scaler.view(("shop", "emails"))
        wall[0] += 30
        scaler._update(target, Work(backlog=1, activity="job-1 started"), None)  # same
        same = scaler.view(("shop", "emails"))
        wall[0] += 30
        scaler._update(target, Work(backlog=0, activity="job-1 finished"), None)
        later = scaler.view(("shop", "emails"))
    finally:
        scaler.close()
    assert first is not None and same is not None and later is not None
    assert first.last_activity == same.last_activity == "2025-11-24T16:00:00Z"
    assert later.last_activity == "2025-11-24T16:01:00Z"
