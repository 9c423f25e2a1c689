"""Send welcome emails to the Celery workers: now, and with a countdown.

    CELERY_BROKER_URL=redis://:PASSWORD@HOST:6379/1 python examples/celery/producer.py

delay:               waits in the `emails` list; wakes the pool at once
apply_async(countdown=30)
                     also wakes the pool at once: a worker takes it and holds it,
                     unacknowledged, until it is due, so one worker stays up for
                     those 30 s (docs/api.md, queue.celery). For work due later,
                     see examples/rq (enqueue_in / enqueue_at).
Tasks are sent by name: the app code need not be importable here.
"""

from __future__ import annotations

import os

from celery import Celery

TASK = "tasks.send_welcome_email"


def main() -> None:
    app = Celery("producer", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
    queue = os.environ.get("CELERY_QUEUE", "emails")
    now = app.send_task(TASK, ("user-4711",), queue=queue)
    later = app.send_task(TASK, ("user-4712",), queue=queue, countdown=30)
    for result, when in ((now, "now"), (later, "in 30 s")):
        print(f"sent {result.id} ({when})")


if __name__ == "__main__":
    main()
