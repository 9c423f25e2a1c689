"""The queue replica decision: up at once, down after the cooldown, never out of bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgjob.scaling.decision import History, Limits, desired_replicas, recommended_replicas
from bgjob.scaling.probes import redact

LIMITS = Limits(
    min_replicas=0,
    max_replicas=10,
    target_per_replica=5,
    activation_threshold=0,
    cooldown_seconds=60,
)


@pytest.mark.parametrize(
    ("backlog", "current", "expected"),
    [
        (0, 0, 0),  # idle stays at zero
        (1, 0, 1),  # anything above the activation threshold wakes one worker
        (5, 0, 1),
        (6, 0, 2),  # ceil(6 / 5)
        (27, 0, 6),
        (500, 3, 10),  # capped at concurrency
        (3, 4, 1),  # the raw recommendation (stabilisation happens later)
    ],
)
def test_recommendation_is_the_backlog_over_the_target(
    backlog: int, current: int, expected: int
) -> None:
    assert recommended_replicas(backlog, current, LIMITS) == expected


def test_a_backlog_at_the_activation_threshold_does_not_wake_a_sleeping_worker() -> None:
    limits = Limits(0, 10, 5, activation_threshold=3, cooldown_seconds=0)
    assert recommended_replicas(3, 0, limits) == 0
    assert recommended_replicas(4, 0, limits) == 1
    # Once awake, a small backlog keeps the worker until it is drained.
    assert recommended_replicas(2, 1, limits) == 1


def test_min_replicas_is_kept_when_idle() -> None:
    limits = Limits(2, 10, 5, 0, 0)
    assert recommended_replicas(0, 2, limits) == 2
    assert desired_replicas(0, 5, limits, History(), now=0) == 2


def test_scale_up_is_immediate() -> None:
    history = History()
    assert desired_replicas(0, 0, LIMITS, history, now=0) == 0
    assert desired_replicas(30, 0, LIMITS, history, now=1) == 6


def test_scale_down_waits_for_the_cooldown_then_goes_to_min() -> None:
    history = History()
    replicas = desired_replicas(30, 0, LIMITS, history, now=0)
    assert replicas == 6
    for second in range(1, 60):
        replicas = desired_replicas(0, replicas, LIMITS, history, now=second)
        assert replicas == 6, f"scaled down after {second}s, before the 60s cooldown"
    assert desired_replicas(0, replicas, LIMITS, history, now=61) == 0


def test_scale_down_follows_the_highest_recent_recommendation() -> None:
    history = History()
    replicas = desired_replicas(50, 0, LIMITS, history, now=0)  # 10
    replicas = desired_replicas(20, replicas, LIMITS, history, now=30)  # wants 4
    assert replicas == 10
    replicas = desired_replicas(20, replicas, LIMITS, history, now=61)
    assert replicas == 4  # the 10 left the window; 4 has been wanted since t=30


def test_missing_data_keeps_what_runs() -> None:
    history = History()
    assert desired_replicas(None, 7, LIMITS, history, now=0) == 7
    assert desired_replicas(None, 0, LIMITS, history, now=1) == 0


@given(
    backlogs=st.lists(st.one_of(st.none(), st.integers(0, 10_000)), min_size=1, max_size=60),
    min_replicas=st.integers(0, 5),
    extra=st.integers(0, 20),
    target=st.integers(1, 50),
    activation=st.integers(0, 20),
    cooldown=st.integers(0, 30),
)
def test_replicas_never_leave_min_and_max(
    backlogs: list[int | None],
    min_replicas: int,
    extra: int,
    target: int,
    activation: int,
    cooldown: int,
) -> None:
    limits = Limits(min_replicas, min_replicas + extra, target, activation, cooldown)
    history = History()
    replicas = min_replicas
    for second, backlog in enumerate(backlogs):
        previous = replicas
        replicas = desired_replicas(backlog, replicas, limits, history, now=second)
        assert limits.min_replicas <= replicas <= limits.max_replicas
        if backlog is None:
            assert replicas == previous


@given(steps=st.lists(st.integers(0, 100), min_size=2, max_size=40))
def test_a_scale_down_never_undercuts_a_recommendation_within_the_cooldown(
    steps: list[int],
) -> None:
    limits = Limits(0, 20, 5, 0, cooldown_seconds=10)
    history = History()
    replicas = 0
    wanted: list[tuple[int, int]] = []
    for second, backlog in enumerate(steps):
        previous = replicas
        wanted.append((second, recommended_replicas(backlog, replicas, limits)))
        replicas = desired_replicas(backlog, replicas, limits, history, now=second)
        if replicas < previous:
            recent = [r for t, r in wanted if t >= second - 10]
            assert max(recent) <= replicas


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@redis:6379/0", "redis://***@redis:6379/0"),
        ("amqp://app:s3cret@rabbit/vhost", "amqp://***@rabbit/vhost"),
        ("redis://s3cret@redis:6379/0", "redis://***@redis:6379/0"),  # a token as the user
        ("rediss://s3cret:@[::1]:6380/0", "rediss://***@[::1]:6380/0"),
        ("amqp://s3cret%40x@rabbit", "amqp://***@rabbit"),
        ("redis://redis:6379", "redis://redis:6379"),
        ("redis://redis:6379/0?password=s3cret", "redis://redis:6379/0?***"),
        ("redis://redis:notaport/0", "<unparsable URL>"),
    ],
)
def test_urls_are_logged_without_their_userinfo(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "s3cret" not in redact(url)


@given(
    values=st.lists(st.integers(0, 50), min_size=1, max_size=200),
    window=st.integers(0, 30),
)
def test_the_bounded_history_is_the_highest_recommendation_in_the_window(
    values: list[int], window: int
) -> None:
    history = History()
    for now, value in enumerate(values):
        history.remember(now, value, window)
        in_window = [v for t, v in enumerate(values[: now + 1]) if t >= now - window]
        assert history.highest() == max(in_window)
        assert len(history.recommendations) <= 51  # at most one entry per distinct value
