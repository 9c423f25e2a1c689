"""`make run`, the README's first command, as a user on a fresh checkout runs it.

hack/run.sh starts its own local control plane (here in a directory of its own,
beside the suite's cluster), the operator, a redis-server and the examples, and
tells their story: the nightly cleanup's run-now succeeds, the welcome email is
sent, the order-processor runs, the thumbnailer drains 12 messages and goes back
to zero, and the RQ welcome emails (now, in 40 s, at +75 s) wake their pool from
zero on time. Not on a terminal, it exits 0 only once all of that was seen.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM first, so run.sh stops the operator and redis it started, then the group."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_make_run_tells_the_whole_story_on_a_cluster_it_starts(tmp_path: Path) -> None:
    # Short: containerd's sockets live under it (a unix socket path is <= 107 bytes).
    cluster = Path(tempfile.mkdtemp(prefix="bgj-run-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["BGJOB_CLUSTER_DIR"] = str(cluster)
    env.pop("BGJOB_RUN_SECONDS", None)
    log = tmp_path / "run.log"
    try:
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["hack/run.sh"],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = process.wait(timeout=900)
            finally:
                _stop(process)
        text = log.read_text(errors="replace")
        assert code == 0, text[-4000:]
        assert "all five examples did what they say" in text, text[-4000:]
        # Each email started when due (now, +40 s, +75 s), the pool woken from zero.
        started = {
            m["user"]: (float(m["at"]), int(m["due"]))
            for m in re.finditer(
                r"(?P<at>[+-]\d+\.\d) s\s+started\s+(?P<user>user-\d+)"
                r"\s+\(due (?P<due>[+-]\d+) s\)",
                text,
            )
        }
        assert sorted(started) == ["user-4711", "user-4712", "user-4713"], text[-4000:]
        for user, (at, due) in started.items():
            # The first one waits for a pod from zero (image pull included).
            assert due - 1 <= at <= due + (60 if due == 0 else 10), (user, at, due)
        # What run.sh started is stopped; the cluster it started stays up until below.
        assert "operator and redis stopped" in text, text[-4000:]
    finally:
        subprocess.run(["hack/cluster.sh", "down"], cwd=REPO, env=env, timeout=300, check=False)
        shutil.rmtree(cluster, ignore_errors=True)
