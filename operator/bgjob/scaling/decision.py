"""The replica decision for queue workers. Pure: backlog and history in, replicas out.

- Up at once: ``ceil(backlog / targetPerReplica)``, clamped to ``[minReplicas, max]``.
- From zero only when the backlog is above ``activationThreshold``.
- Down only to the highest recommendation of the last ``cooldownSeconds``, so
  replicas do not flap and reach ``minReplicas`` only after a quiet cooldown.
- No data (the broker is unreachable): keep what runs now, never scale on a guess.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limits:
    """What the spec allows: the bounds and the knobs of the decision."""

    min_replicas: int
    max_replicas: int
    target_per_replica: int
    activation_threshold: int
    cooldown_seconds: float


# Entries a History keeps at most, whatever the cooldown: beyond it the two oldest merge
# into one that keeps the higher recommendation for the later time (scaling down later,
# never earlier).
HISTORY_CAP = 256


@dataclass
class History:
    """Recent recommendations as a monotonic deque, oldest first: (time, replicas) with
    replicas strictly decreasing, so the front is the highest one in the window.

    A recommendation below a newer one can never be the highest again, so it is dropped
    on arrival: memory is bounded by the distinct values (and HISTORY_CAP), each poll
    costs O(1) amortised, however long the cooldown."""

    recommendations: deque[tuple[float, int]] = field(default_factory=deque)

    def remember(self, now: float, replicas: int, window: float) -> None:
        """Add a recommendation and forget those older than the window."""
        kept = self.recommendations
        while kept and kept[-1][1] <= replicas:
            kept.pop()
        kept.append((now, replicas))
        cutoff = now - window
        while len(kept) > 1 and kept[0][0] < cutoff:
            kept.popleft()
        if len(kept) > HISTORY_CAP:
            oldest = kept.popleft()
            second = kept.popleft()
            kept.appendleft((second[0], oldest[1]))

    def highest(self) -> int:
        """The highest recommendation still in the window."""
        return self.recommendations[0][1]


def recommended_replicas(backlog: int, current: int, limits: Limits) -> int:
    """Replicas the backlog calls for right now, before stabilisation."""
    if current == 0 and backlog <= limits.activation_threshold:
        wanted = 0
    else:
        wanted = math.ceil(backlog / limits.target_per_replica)
    return max(limits.min_replicas, min(wanted, limits.max_replicas))


def desired_replicas(
    backlog: int | None, current: int, limits: Limits, history: History, now: float
) -> int:
    """Replicas to run now. Scales up at once, down only after the cooldown window."""
    if backlog is None:
        return max(limits.min_replicas, min(current, limits.max_replicas))
    recommendation = recommended_replicas(backlog, current, limits)
    history.remember(now, recommendation, limits.cooldown_seconds)
    if recommendation >= current:
        return recommendation
    return max(recommendation, min(history.highest(), current))


# --- work-aware backends (rq, celery) -------------------------------------------------


@dataclass
class Activity:
    """When the workers last started or finished a job, as polls saw it: the cooldown of
    a work-aware backend counts from here, not from the last poll that saw a backlog."""

    fingerprint: object = None
    last_change: float | None = None

    def observe(self, fingerprint: object, now: float) -> None:
        """Note the workers' state; a change (or the first look) is activity now."""
        if self.last_change is None or fingerprint != self.fingerprint:
            self.last_change = now
        self.fingerprint = fingerprint


def due_soon(due_times: tuple[float, ...], wall_now: float, lead: float) -> int:
    """Scheduled jobs not yet due that fall due within ``lead`` seconds: they count as
    backlog, so a worker is running by the time they are due."""
    return sum(1 for due in due_times if due - wall_now <= lead)


def next_wake(due_times: tuple[float, ...], wall_now: float, lead: float) -> float | None:
    """Wall time at which the next scheduled job enters its lead; None when none is
    waiting beyond its lead."""
    later = [due - lead for due in due_times if due - wall_now > lead]
    return min(later) if later else None


def desired_work_replicas(
    backlog: int | None,
    busy: int,
    fingerprint: object,
    current: int,
    limits: Limits,
    activity: Activity,
    now: float,
) -> int:
    """Replicas for a pool whose busy workers and job starts/finishes are known.

    Up at once like ``desired_replicas``; down only when no job started or finished for
    ``cooldown_seconds``, and never below the busy workers (within the bounds). No data:
    keep what runs now.
    """
    if backlog is None:
        return max(limits.min_replicas, min(current, limits.max_replicas))
    activity.observe(fingerprint, now)
    floor = min(busy, limits.max_replicas)
    recommendation = max(recommended_replicas(backlog, current, limits), floor)
    if recommendation >= current:
        return recommendation
    assert activity.last_change is not None
    if now - activity.last_change < limits.cooldown_seconds:
        return max(recommendation, min(current, limits.max_replicas))
    return recommendation
