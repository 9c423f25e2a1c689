"""The Celery app of the e2e tests: one task that journals its start and finish.

Settings a work-aware pool wants: acks_late (a task in hand stays unacknowledged, so
the operator counts it), prefetch 1 (a worker holds one task at a time), and
reject_on_worker_lost (a task cut off is delivered again).
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery("e2e", broker=BROKER)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="e2e.slow")
def slow(journal: str, tag: str, seconds: float) -> str:
    client = redis.Redis.from_url(BROKER)
    client.rpush(journal, f"started {tag}")
    time.sleep(seconds)
    client.rpush(journal, f"finished {tag}")
    return tag
