"""Real RQ (or Celery) workers on the host standing for the pods of a Deployment (on
kwok nodes).

For every Running pod a real ``rq worker --with-scheduler`` process starts (or the
``command`` given), whose hostname (the field RQ stores, and the operator maps to
pods) is the pod's name, as it is inside a pod. A pod that goes away is stopped as
the kubelet stops a container: SIGTERM, then SIGKILL of its whole process group
after the grace period, so a job still running then is interrupted, as in a pod.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import rq
import rq.job

from tests.e2e.support import Kubectl

ROOT = Path(__file__).resolve().parents[2]


class PodWorker(rq.SimpleWorker):
    """An RQ worker whose hostname is its pod's name (POD_NAME), as inside the pod.

    It runs jobs in the worker's own process (RQ's SimpleWorker): RQ's forking worker
    puts each job's work horse in a process group of its own (setpgrp), which a
    SIGKILL of the worker's process group would miss, while stopping a container
    kills every process in it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.hostname = os.environ["POD_NAME"]


def slow(journal: str, tag: str, seconds: float) -> str:
    """A job that logs its start and finish to the Redis list ``journal``."""
    job = rq.get_current_job()
    assert job is not None
    job.connection.rpush(journal, f"started {tag}")
    time.sleep(seconds)
    job.connection.rpush(journal, f"finished {tag}")
    return tag


@dataclass
class HostPool:
    """Keeps one real RQ worker process per Running pod of a Deployment."""

    kubectl: Kubectl
    namespace: str
    selector: str
    url: str
    queues: list[str]
    grace: float = 1.0
    log_dir: Path = field(default_factory=lambda: Path("/tmp"))
    # argv of the worker standing for a pod (default: an RQ worker with its scheduler).
    command: Callable[[str], list[str]] | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    stopping: dict[str, float] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    killed_busy: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HostPool:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for name in list(self.workers):
            self._kill(name)

    def _pods(self) -> dict[str, bool]:
        """Pod name -> whether it is Running and not being deleted."""
        out = self.kubectl.run(
            "get", "pods", "-n", self.namespace, "-l", self.selector, "-o", "json", check=False
        )
        if out.returncode != 0:
            return {}
        pods = json.loads(out.stdout)["items"]
        return {
            p["metadata"]["name"]: p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
            for p in pods
        }

    def _loop(self) -> None:
        while not self._stop.is_set():
            pods = self._pods()
            for name, running in pods.items():
                if running and name not in self.workers and name not in self.stopping:
                    self._start(name)
            for name in list(self.workers):
                if not pods.get(name) and name not in self.stopping:
                    self._terminate(name)
            now = time.monotonic()
            for name, since in list(self.stopping.items()):
                if now - since >= self.grace:
                    self._kill(name)
            time.sleep(0.2)

    def _start(self, pod: str) -> None:
        log = (self.log_dir / f"rq-{pod}.log").open("ab")
        env = {**os.environ, "POD_NAME": pod, "PYTHONPATH": str(ROOT)}
        argv = [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--with-scheduler",
            "--url",
            self.url,
            "--worker-class",
            "tests.e2e.rq_pool.PodWorker",
            *self.queues,
        ]
        self.workers[pod] = subprocess.Popen(
            self.command(pod) if self.command else argv,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started_at[pod] = time.monotonic()

    def _terminate(self, pod: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.workers[pod].send_signal(signal.SIGTERM)
        self.stopping[pod] = time.monotonic()

    def _kill(self, pod: str) -> None:
        process = self.workers.pop(pod, None)
        self.stopping.pop(pod, None)
        if process is None:
            return
        if process.poll() is None or _group_alive(process.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
