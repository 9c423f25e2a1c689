"""Real brokers for the queue trigger, started on loopback and stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"port {port} not open within {timeout}s:\n{log.read_text()[-2000:]}")


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class RedisServer:
    """redis-server on 127.0.0.1, no persistence; with ``password``, clients must AUTH.

    ``also_on``: more local addresses to listen on, e.g. the real node's bridge
    address, so that pods there reach it too (and nothing beyond)."""

    def __init__(
        self, port: int | None = None, password: str | None = None, also_on: Sequence[str] = ()
    ) -> None:
        self.port = port or free_port()
        self.password = password
        self.also_on = tuple(also_on)
        self.dir = Path(tempfile.mkdtemp(prefix="bgjob-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_at("127.0.0.1")

    def url_at(self, host: str) -> str:
        """The URL through one of the addresses it listens on."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{host}:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (hack/deps.sh installs it)")
        log = self.dir / "redis.log"
        self.process = subprocess.Popen(
            [
                binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1", *self.also_on,
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.dir),
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for_port(self.port, self.process, 15, log)

    def stop(self) -> None:
        stop(self.process)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RabbitMQServer:
    """rabbitmq-server on 127.0.0.1 with its own epmd, data dir and ports."""

    def __init__(self) -> None:
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.management_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bgjob-rabbitmq-"))
        self.epmd: subprocess.Popen[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.dir),  # the Erlang cookie lives here
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": f"bgjob{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self) -> None:
        if not RABBITMQ_BIN.exists():
            raise RuntimeError("rabbitmq-server is not installed (hack/deps.sh installs it)")
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.dir / "rabbitmq.conf").write_text(
            "loopback_users.guest = true\n"
            f"management.tcp.port = {self.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
        )
        env = self._env()
        epmd_log = self.dir / "epmd.log"
        # epmd in the foreground, as our child, so it is stopped by PID like the rest.
        self.epmd = subprocess.Popen(
            ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            stdout=epmd_log.open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_for_port(self.epmd_port, self.epmd, 10, epmd_log)
        log = self.dir / "server.log"
        self.process = subprocess.Popen(
            [str(RABBITMQ_BIN)], stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env
        )
        wait_for_port(self.port, self.process, 90, log)
        wait_for_port(self.management_port, self.process, 30, log)

    def cleanup(self) -> None:
        stop(self.process, timeout=30)
        stop(self.epmd)
        shutil.rmtree(self.dir, ignore_errors=True)


class BlackHole:
    """A port that accepts TCP connections (the kernel completes the handshake) and never
    answers a byte: what a broker behind a dead route or a stuck process looks like."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)  # never accepted: connections wait in the backlog
        self.port: int = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()
