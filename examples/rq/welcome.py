"""The example app's job: send a welcome email (RQ's Perform).

The "mail service" here is a Redis list, ``outbox`` (on the queue's own Redis), so the
example runs anywhere: each email is logged when it starts and when it is sent,
with the pod that sent it, and a job cut off half way shows as started, never sent.
"""

from __future__ import annotations

import os
import socket
import time

from rq import get_current_job

OUTBOX = os.environ.get("WELCOME_OUTBOX", "outbox")
SECONDS = float(os.environ.get("WELCOME_EMAIL_SECONDS", "2"))


def send_welcome_email(user_id: str, seconds: float | None = None) -> str:
    """Compose and 'send' the welcome email of ``user_id``; takes ``seconds`` (default
    WELCOME_EMAIL_SECONDS)."""
    job = get_current_job()
    assert job is not None, "runs inside an RQ worker"
    redis = job.connection
    pod = socket.gethostname()
    redis.rpush(OUTBOX, f"{time.time():.3f} {pod} started {user_id}")
    time.sleep(SECONDS if seconds is None else seconds)
    redis.rpush(OUTBOX, f"{time.time():.3f} {pod} sent {user_id}")
    return f"welcome email sent to {user_id}"
