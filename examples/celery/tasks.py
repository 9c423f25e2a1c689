"""The example Celery app: send a welcome email (the same job as examples/rq/welcome.py).

    celery --app tasks worker --queues emails --pool solo

The "mail service" is a Redis list, ``outbox`` (on the broker's own Redis), so the
example runs anywhere: each email is logged when it starts and when it is sent, with
the pod that sent it, and a task cut off half way shows as started, never sent. The
worker's own shutdown is logged there too (``POD SIGTERM Warm``): on SIGTERM Celery
stops taking tasks and finishes the one in hand (warm shutdown), so give the pod a
grace period above the longest task.

Settings a work-aware pool wants (the operator counts waiting + unacknowledged
messages, docs/api.md, queue.celery):
- ``task_acks_late``: a task in hand stays unacknowledged, so it keeps its worker up;
- ``task_reject_on_worker_lost``: a task whose worker died is delivered again;
- ``worker_prefetch_multiplier = 1``: a worker reserves one task at a time, so the
  others wait in the list where any new worker can take them.
"""

from __future__ import annotations

import os
import socket
import time

import redis
from celery import Celery
from celery.signals import worker_shutting_down

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
OUTBOX = os.environ.get("WELCOME_OUTBOX", "outbox")
SECONDS = float(os.environ.get("WELCOME_EMAIL_SECONDS", "2"))

app = Celery("tasks", broker=BROKER)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=os.environ.get("CELERY_QUEUE", "emails"),
    broker_connection_retry_on_startup=True,
    # kombu redelivers a message unacknowledged for this long: above the longest
    # countdown/ETA a worker may hold (docs/api.md).
    broker_transport_options={"visibility_timeout": 3600},
)


@app.task(name="tasks.send_welcome_email")
def send_welcome_email(user_id: str, seconds: float | None = None) -> str:
    """Compose and 'send' the welcome email of ``user_id``; takes ``seconds`` (default
    WELCOME_EMAIL_SECONDS)."""
    outbox = redis.Redis.from_url(BROKER, socket_timeout=10)
    pod = socket.gethostname()
    outbox.rpush(OUTBOX, f"{time.time():.3f} {pod} started {user_id}")
    time.sleep(SECONDS if seconds is None else seconds)
    outbox.rpush(OUTBOX, f"{time.time():.3f} {pod} sent {user_id}")
    return f"welcome email sent to {user_id}"


@worker_shutting_down.connect
def journal_shutdown(sig: str = "", how: str = "", **_: object) -> None:
    """Log the worker's shutdown (``SIGTERM Warm``) next to the emails."""
    outbox = redis.Redis.from_url(BROKER, socket_timeout=5)
    outbox.rpush(OUTBOX, f"{time.time():.3f} {socket.gethostname()} {sig} {how}")
