"""Enqueue welcome emails three ways: now, in a while, at a time.

    RQ_REDIS_URL=redis://:PASSWORD@HOST:6379/0 python examples/rq/producer.py

Perform:   queue.enqueue       runs as soon as a worker is free (wakes the pool)
PerformIn: queue.enqueue_in    due after a delay; the operator starts a worker
                               scheduleLeadSeconds before it is due
PerformAt: queue.enqueue_at    due at a time; the same
The app code need not be importable here: jobs are named by their import path.
WELCOME_IN_SECONDS (30) and WELCOME_AT_SECONDS (120) set the two delays.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from redis import Redis
from rq import Queue

JOB = "welcome.send_welcome_email"


def main() -> None:
    redis = Redis.from_url(os.environ.get("RQ_REDIS_URL", "redis://127.0.0.1:6379/0"))
    queue = Queue(os.environ.get("RQ_QUEUE", "emails"), connection=redis)
    delay = float(os.environ.get("WELCOME_IN_SECONDS", "30"))
    at_seconds = float(os.environ.get("WELCOME_AT_SECONDS", "120"))
    now = queue.enqueue(JOB, "user-4711")
    later = queue.enqueue_in(timedelta(seconds=delay), JOB, "user-4712")
    at = queue.enqueue_at(datetime.now(UTC) + timedelta(seconds=at_seconds), JOB, "user-4713")
    for job, when in ((now, "now"), (later, f"in {delay:g} s"), (at, f"at now + {at_seconds:g} s")):
        print(f"enqueued {job.id} ({when})")


if __name__ == "__main__":
    main()
