"""Enqueue welcome emails three ways: now, in a while, at a time.

    RQ_REDIS_URL=redis://:PASSWORD@HOST:6379/0 python examples/rq/producer.py

Perform:   queue.enqueue       runs as soon as a worker is free (wakes the pool)
PerformIn: queue.enqueue_in    due after a delay; the operator starts a worker
                               scheduleLeadSeconds before it is due
PerformAt: queue.enqueue_at    due at a time; the same
The app code need not be importable here: jobs are named by their import path.
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
    now = queue.enqueue(JOB, "user-4711")
    later = queue.enqueue_in(timedelta(seconds=30), JOB, "user-4712")
    at = queue.enqueue_at(datetime.now(UTC) + timedelta(minutes=2), JOB, "user-4713")
    for job, when in ((now, "now"), (later, "in 30 s"), (at, "in 2 min")):
        print(f"enqueued {job.id} ({when})")


if __name__ == "__main__":
    main()
