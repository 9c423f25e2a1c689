"""End-to-end helpers: kubectl, the operator process, polling, manifests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO = Path(__file__).resolve().parents[2]
SYSTEM_NAMESPACE = "bgjob-system"
RELEASE = "bgjob-operator"
T = TypeVar("T")
# kwok runs no containers, so any name will do; on kind, a real non-root image.
IMAGE = os.environ.get("BGJOB_E2E_IMAGE", "registry.example.com/worker:1.0")


def bin_dir() -> str:
    out = subprocess.run(
        [str(REPO / "hack" / "bins.sh")], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


class Kubectl:
    """kubectl against the test cluster, as the admin the kubeconfig names."""

    def __init__(self, kubeconfig: str, bin_dir: str) -> None:
        self.kubeconfig = kubeconfig
        self.bin_dir = bin_dir
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}
        self.env["PATH"] = f"{bin_dir}:{self.env.get('PATH', '')}"

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        result = self.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def apply(self, manifest: dict[str, Any] | str, namespace: str) -> None:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        self.run("apply", "-n", namespace, "-f", "-", stdin=text)

    def try_apply(
        self, manifest: dict[str, Any], namespace: str
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest), check=False
        )

    def wait(self, what: str, condition: str, namespace: str, timeout: int = 60) -> None:
        self.run(
            "wait",
            f"--for={condition}",
            what,
            "-n",
            namespace,
            f"--timeout={timeout}s",
            timeout=timeout + 10,
        )


def eventually(check: Callable[[], T], timeout: float = 60, interval: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s; last value: {last!r}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_established(k: Kubectl, crd: str, timeout: float = 60) -> None:
    """Wait until a CRD is served. Not `kubectl wait`: it fails instead of waiting
    while a new CRD has no conditions yet (a large one takes a moment)."""

    def established() -> bool:
        body = k.get("crd", crd, "default") or {}
        conditions = (body.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    eventually(established, timeout=timeout)


def chart_template(k: Kubectl, *templates: str) -> str:
    """The chart's templates rendered as the release would be on this cluster."""
    # `helm template` does not ask the cluster its version; the chart's
    # kubeVersion needs the real one.
    server = k.json("version")["serverVersion"]["gitVersion"]
    shown = [arg for template in templates for arg in ("--show-only", template)]
    result = subprocess.run(
        [
            "helm",
            "template",
            RELEASE,
            str(REPO / "charts" / "bgjob-operator"),
            "--namespace",
            SYSTEM_NAMESPACE,
            "--kube-version",
            server,
            *shown,
        ],
        check=True,
        capture_output=True,
        text=True,
        env=k.env,
        timeout=60,
    )
    return result.stdout


def chart_rbac(k: Kubectl) -> str:
    return chart_template(k, "templates/serviceaccount.yaml", "templates/rbac.yaml")


def serviceaccount_kubeconfig(k: Kubectl, token: str, path: Path) -> None:
    admin = k.json("config", "view", "--raw", "--minify")
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "bgjob-operator", "user": {"token": token}}],
        "contexts": [
            {"name": "operator", "context": {"cluster": "test", "user": "bgjob-operator"}}
        ],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))


class Operator:
    """The operator process, started and stopped by PID."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        *,
        command: Sequence[str] = (str(REPO / ".venv" / "bin" / "bgjob-operator"), "run"),
        args: Sequence[str] = ("--log-level=debug",),
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """``command`` and ``args`` around the health and metrics addresses;
        ``env`` replaces the inherited environment (KUBECONFIG is always set)."""
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.command = tuple(command)
        self.args = tuple(args)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.health_port = 0
        self.metrics_port = 0

    def start(self) -> None:
        self.health_port, self.metrics_port = free_port(), free_port()
        base = os.environ if self.env is None else self.env
        env = {**base, "KUBECONFIG": str(self.kubeconfig)}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                *self.command,
                f"--health-address=127.0.0.1:{self.health_port}",
                f"--metrics-address=127.0.0.1:{self.metrics_port}",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.cwd,
        )
        eventually(self.healthy, timeout=30, interval=0.2)

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the operator exited:\n{self.log_tail()}")
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
            return text

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("the operator did not stop within 20 s of SIGTERM") from None

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def metric(text: str, name: str, /, **labels: str) -> float | None:
    """One sample from a /metrics page: the value of ``name`` with exactly these labels."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def secret(name: str, **data: str) -> dict[str, Any]:
    """A Secret with these string values."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def restricted_namespace(name: str) -> dict[str, Any]:
    """A Namespace that enforces Pod Security "restricted"."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }


def bgjob(name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    """A BackgroundJob manifest."""
    return {
        "apiVersion": "bgjob.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": name, **metadata},
        "spec": {"image": IMAGE, **spec},
    }


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    """One condition of an object's status, or None."""
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            found: dict[str, Any] = item
            return found
    return None


def events(k: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    """Events recorded on one BackgroundJob."""
    listed = k.json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )
    items: list[dict[str, Any]] = listed["items"]
    return items


# --- the real kubelet node (hack/realnode.py) ---------------------------------

REAL_NODE = "localhost"
REAL_NODE_TAINT = "bgjob.dev/real-node"


class RealNode:
    """The local cluster's real kubelet node, as recorded in state.json next to
    the kubeconfig: its registry and where the kubelet keeps pod volumes."""

    def __init__(self, kubeconfig: str) -> None:
        state_file = Path(kubeconfig).resolve().parent / "state.json"
        try:
            info = json.loads(state_file.read_text())["realnode"]
        except (OSError, ValueError, KeyError) as e:
            raise AssertionError(
                f"no real node in {state_file}: these tests need the local cluster "
                "(hack/cluster.sh up) with its real kubelet node"
            ) from e
        self.registry: str = info["registry"]
        self.kubelet_root = state_file.parent / "realnode" / "kubelet" / "root"
        # The host's address on the node's bridge (x.y.z.1 of its /24): what
        # pods reach the host at; nothing else of the host is reachable to them.
        self.bridge_address: str = info["subnet"].rsplit(".", 1)[0] + ".1"

    def image(self, name: str) -> str:
        """An image the test bed pushed to the node's registry (hack/images.sh)."""
        return f"{self.registry}/{name}"

    def empty_dir(self, pod_uid: str, volume: str) -> Path:
        """Where an emptyDir volume of a pod on this node lives on the host."""
        return self.kubelet_root / "pods" / pod_uid / "volumes" / "kubernetes.io~empty-dir" / volume


def on_real_node(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """A pod spec overlay (a BackgroundJob's template.spec) that puts the pod on
    the real node: its taint tolerated, its hostname selected."""
    return {
        **(spec or {}),
        "nodeSelector": {"kubernetes.io/hostname": REAL_NODE},
        "tolerations": [{"key": REAL_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
    }


class FileTail:
    """Follow a file a container writes (e.g. in an emptyDir), from the host.

    The file is opened as soon as it exists and kept open, so lines written
    until the writer dies are read even after the kubelet removes the pod's
    volume directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self._f: Any = None
        self._closed = False

    def poll(self) -> list[str]:
        """Every line so far (after close(): every line there was)."""
        if self._closed:
            return self.lines
        if self._f is None:
            try:
                self._f = open(self.path)  # noqa: SIM115 - kept open on purpose
            except FileNotFoundError:
                return self.lines
        for line in self._f.read().splitlines():
            self.lines.append(line)
        return self.lines

    def close(self) -> None:
        self.poll()
        self._closed = True
        if self._f is not None:
            self._f.close()


class PodWatch:
    """`kubectl get pod -w -o json` in the background: every state the API
    server reports for one pod, in order (a poll would miss short-lived ones)."""

    def __init__(self, k: Kubectl, namespace: str, name: str) -> None:
        self.states: list[dict[str, Any]] = []
        self._proc = subprocess.Popen(
            ["kubectl", "get", "pod", name, "-n", namespace, "-w", "-o", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=k.env,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        decoder = json.JSONDecoder()
        buf = ""
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            buf += line
            while buf.strip():
                try:
                    obj, end = decoder.raw_decode(buf.lstrip())
                except ValueError:
                    break
                self.states.append(obj)
                buf = buf.lstrip()[end:]

    def terminated(self) -> dict[str, Any] | None:
        """The worker container's last `terminated` state seen, if any."""
        for pod in reversed(self.states):
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                state = (cs.get("state") or {}).get("terminated")
                if cs.get("name") == "worker" and state:
                    found: dict[str, Any] = state
                    return found
        return None

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
