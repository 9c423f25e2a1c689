"""A queue worker for the real node: takes messages from a Redis list, one at a time.

Environment:
  REDIS_URL       redis://[:password@]host:port/db (from the same Secret the
                  BackgroundJob's trigger names, so both reach the same list)
  QUEUE           the list to take messages from (BLPOP)
  WORK_SECONDS    how long one message takes (default 2)
  JOURNAL         optional list: every event is also RPUSHed there, so a test
                  can read what happened after the pod is gone

Every message is logged when it starts and when it finishes. SIGTERM stops the
loop: the message in hand is finished first, then the worker exits 0, well
inside BGJOB_SHUTDOWN_TIMEOUT_SECONDS as long as one message takes less.
Events, one line each, `TIME POD EVENT`: `ready ...`, `start MSG`, `finish
MSG`, then on SIGTERM `sigterm at=TIME holding=MSG|-` and `exit 0` (logged
when the loop has stopped, so after the `finish` of the message it held).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from types import FrameType

import redis

POD = os.environ.get("HOSTNAME") or socket.gethostname()
QUEUE = os.environ["QUEUE"]
WORK_SECONDS = float(os.environ.get("WORK_SECONDS", "2"))
JOURNAL = os.environ.get("JOURNAL", "")

client = redis.Redis.from_url(
    os.environ["REDIS_URL"], socket_timeout=10, socket_connect_timeout=5, decode_responses=True
)
holding: str | None = None
sigterm: tuple[float, str | None] | None = None  # when, and the message in hand then


def say(event: str) -> None:
    line = f"{time.time():.3f} {POD} {event}"
    print(line, flush=True)
    if JOURNAL:
        client.rpush(JOURNAL, line)


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    global sigterm
    # Only noted here (the Redis connection may be mid-command): the loop
    # finishes the message in hand, then journals this and exits.
    sigterm = (time.time(), holding)
    print(f"{sigterm[0]:.3f} {POD} sigterm holding={holding or '-'}", flush=True)


def main() -> int:
    global holding
    signal.signal(signal.SIGTERM, on_sigterm)
    say(f"ready queue={QUEUE} work={WORK_SECONDS}s")
    while sigterm is None:
        # A short blocking pop: an idle worker notices SIGTERM within a second.
        item = client.blpop([QUEUE], timeout=1)
        if item is None:
            continue
        holding = item[1]
        say(f"start {holding}")
        deadline = time.monotonic() + WORK_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))  # the work; SIGTERM does not cut it short
        say(f"finish {holding}")
        holding = None
    at, held = sigterm
    say(f"sigterm at={at:.3f} holding={held or '-'}")
    say("exit 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
