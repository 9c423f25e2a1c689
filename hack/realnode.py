"""The real node of the local test cluster: a kubelet backed by containerd.

Used by hack/cluster.py: `up` starts, next to the kwok nodes, a local image
registry and one real kubelet node named `localhost` (containerd + runc + the
CNI bridge plugin, all from Debian packages, see hack/deps.sh); `down` stops
what it started, by recorded PID, and undoes every side effect on the host.

Several clusters (one per state dir, e.g. one per worktree) may each run a
real node at the same time. What would otherwise collide is derived from the
state dir or chosen under a host-wide lock:

- node name `localhost` is per cluster (each cluster has its own apiserver);
- kubelet/containerd/registry ports: free ports;
- containerd root, state, socket, runc root, netns mounts, opt dir: state dir;
- the Linux bridge `bgj<id>` and its /24 in 10.89.0.0/16 (first free one);
- the kubelet's cgroup root `/bgjob-<id>` in every cgroup v1 hierarchy;
- CNI network name (so libcni's cache files in /var/lib/cni are per node).

What no flag moves (/var/lib/kubelet/device-plugins, /var/log/containers
symlinks, /run/containerd/{s,fifo}, /var/lib/cni/results) is shared: each node
removes its own entries, and the last node down removes the directories that
the first one created (a host-wide registry in /run/bgjob-realnode).

Pods reach the API server as in any cluster, at the `kubernetes` Service's
address (KUBERNETES_SERVICE_HOST, 10.96.0.1:443), without kube-proxy: that
address is put on the node's bridge and a small TCP forwarder (`python3
realnode.py forward`, bound to the bridge device, so each cluster's pods reach
their own API server) relays it to the API server on 127.0.0.1.

No host side effect beyond those: iptables is kept out of the kubelet's PATH
(so it creates no KUBE-* chains), the bridge plugin runs without ipMasq and
without isGateway (so it never sets net.ipv4.ip_forward; the bridge address
that lets the host reach pods is set here instead), and nothing is routed
beyond the bridge: pods reach the host and each other, not the outside world.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

NODE_NAME = "localhost"
TAINT_KEY = "bgjob.dev/real-node"
LABEL = f"{TAINT_KEY}=true"
HOST_DIR = Path("/run/bgjob-realnode")  # host-wide registry of running real nodes
SUBNET_PREFIX = "10.89"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service (hack/cluster.py SERVICE_CIDR)
# Host paths that containerd / the kubelet use whatever we configure.
SHARED_DIRS = [
    Path("/var/lib/kubelet/device-plugins"),
    Path("/var/lib/kubelet"),
    Path("/var/log/containers"),
    Path("/run/containerd/s"),
    Path("/run/containerd/fifo"),
    Path("/run/containerd/runc"),
    Path("/run/containerd"),
    Path("/var/lib/cni/results"),
    Path("/var/lib/cni"),
]
# The kubelet finds mount, umount, nsenter, du... here but not iptables
# (/usr/sbin): with no iptables it sets up no KUBE-* chains on the host.
KUBELET_PATH = "/usr/local/bin:/usr/bin:/bin"
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RealNodeError(Exception):
    pass


class Ctx:
    """What the real node needs from hack/cluster.py (kept as callables so
    this module has no import cycle with it)."""

    def __init__(
        self,
        state_dir: Path,
        pki: Path,
        logs: Path,
        spawn: Callable[..., subprocess.Popen[bytes]],
        stop: Callable[[str], None],
        alive: Callable[[str], bool],
        log: Callable[[str], None],
        cert: Callable[[str, str, str], None],
        write_kubeconfig: Callable[[Path, str, str], None],
        free_ports: Callable[[int], list[int]],
    ) -> None:
        self.state_dir = state_dir
        self.pki = pki
        self.logs = logs
        self.spawn = spawn
        self.stop = stop
        self.alive = alive
        self.log = log
        self.cert = cert
        self.write_kubeconfig = write_kubeconfig
        self.free_ports = free_ports
        self.dir = state_dir / "realnode"
        self.node_id = hashlib.sha256(str(state_dir).encode()).hexdigest()[:6]
        self.bridge = f"bgj{self.node_id}"
        self.cgroup = f"bgjob-{self.node_id}"
        self.network = f"bgjob-{self.node_id}"

    @property
    def sock(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"


# Started in this order, stopped in reverse (before the control plane stops).
COMPONENTS = ["registry", "api-forwarder", "containerd", "kubelet"]


def enabled() -> bool:
    return os.environ.get("BGJOB_REAL_NODE", "1") != "0"


def run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RealNodeError(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr}{r.stdout}")
    return r


# --- host-wide registry ------------------------------------------------------


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    HOST_DIR.mkdir(parents=True, exist_ok=True)
    with open(HOST_DIR / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _others(ctx: Ctx) -> list[dict[str, Any]]:
    """Other real nodes on this host whose state dir still exists."""
    out = []
    for f in HOST_DIR.glob("node-*.json"):
        if f.name == f"node-{ctx.node_id}.json":
            continue
        try:
            rec = json.loads(f.read_text())
            assert isinstance(rec, dict)
        except (OSError, ValueError, AssertionError):
            continue
        if Path(rec.get("state_dir", "/nonexistent")).exists():
            out.append(rec)
        else:
            f.unlink(missing_ok=True)  # its cluster is gone without a `down`
    return out


def _claim(ctx: Ctx) -> int:
    """Register this node host-wide and pick a free /24; returns its third octet.
    The first node also records which shared host dirs already existed."""
    others = _others(ctx)
    created_file = HOST_DIR / "shared-dirs-created"
    if not others:
        created = [str(d) for d in SHARED_DIRS if not d.exists()]
        created_file.write_text(json.dumps(created))
    used = {rec["octet"] for rec in others}
    routes = run("ip", "-4", "route", "show").stdout
    for octet in range(0, 256):
        if octet not in used and f"{SUBNET_PREFIX}.{octet}.0/24" not in routes:
            break
    else:
        raise RealNodeError(f"no free /24 left in {SUBNET_PREFIX}.0.0/16")
    rec = {"state_dir": str(ctx.state_dir), "octet": octet, "bridge": ctx.bridge}
    (HOST_DIR / f"node-{ctx.node_id}.json").write_text(json.dumps(rec))
    return octet


# --- start -------------------------------------------------------------------


def containerd_bin() -> Path:
    """The dir with containerd 2.x, its runc shim and ctr: hack/containerd.sh
    builds them once from the Go module proxy (minutes cold, instant after)."""
    r = subprocess.run(
        [str(Path(__file__).resolve().parent / "containerd.sh")],
        stdout=subprocess.PIPE,
        text=True,
        timeout=3600,
    )
    if r.returncode != 0 or not r.stdout.strip():
        raise RealNodeError("hack/containerd.sh failed")
    return Path(r.stdout.strip().splitlines()[-1])


def _ctr(ctx: Ctx) -> list[str]:
    """ctr of the containerd this node started (recorded at start), on its socket."""
    recorded = ctx.dir / "containerd" / "bin-dir"
    ctr = Path(recorded.read_text().strip()) / "ctr" if recorded.exists() else Path("ctr")
    return [str(ctr), "--address", str(ctx.sock), "-n", "k8s.io"]


def start(
    ctx: Ctx, bindir: Path, server: str, procs: dict[str, Any], deadline: float
) -> dict[str, Any]:
    """Start the registry, push the base images, start containerd and the
    kubelet; return what goes into state.json under "realnode"."""
    t0 = time.monotonic()
    # A unix socket's path holds at most 107 bytes; containerd's ttrpc socket is
    # the longest under the state dir, and containerd only says "exited 1".
    longest = len(os.fsencode(f"{ctx.sock}.ttrpc"))
    if longest > 107:
        raise RealNodeError(
            f"the state dir {ctx.state_dir} is too long for containerd's sockets "
            f"({longest} > 107 bytes): set BGJOB_CLUSTER_DIR to a shorter path"
        )
    for d in (
        "registry",
        "containerd",
        "cni/net.d",
        "cni/ipam",
        "kubelet/root",
        "kubelet/pki",
        "kubelet/pod-logs",
        "shared",
    ):
        (ctx.dir / d).mkdir(parents=True, exist_ok=True)
    reg_port, kubelet_port, healthz_port = ctx.free_ports(3)
    registry = f"127.0.0.1:{reg_port}"
    (ctx.state_dir / "registry").write_text(registry + "\n")
    with host_lock():
        octet = _claim(ctx)
        subnet = f"{SUBNET_PREFIX}.{octet}"
        _make_bridge(ctx, subnet)
        _make_cgroups(ctx)
    info = {
        "registry": registry,
        "subnet": f"{subnet}.0/24",
        "bridge": ctx.bridge,
        "cgroup_root": f"/{ctx.cgroup}",
        "shared_dir": str(ctx.dir / "shared"),
    }

    # The registry: images are pushed here by hack/images.sh and pulled by containerd.
    (ctx.dir / "registry.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {ctx.dir / 'registry'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {registry}\n"
    )
    procs["registry"] = ctx.spawn(
        "registry", ["docker-registry", "serve", str(ctx.dir / "registry.yml")]
    )
    _wait("the registry", lambda: _http_ok(f"http://{registry}/v2/"), deadline, procs, ctx)
    r = subprocess.run(
        [str(HACK / "images.sh"), "push", registry], stdout=subprocess.PIPE, stderr=None, text=True
    )
    if r.returncode != 0:
        raise RealNodeError("hack/images.sh push failed")
    t_images = time.monotonic()

    # The API server for pods: the Service address on the bridge, relayed.
    api_port = int(server.rsplit(":", 1)[1])
    run("ip", "addr", "replace", f"{SERVICE_IP}/32", "dev", ctx.bridge)
    procs["api-forwarder"] = ctx.spawn(
        "api-forwarder",
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "forward",
            ctx.bridge,
            f"{SERVICE_IP}:443",
            f"127.0.0.1:{api_port}",
        ],
    )

    _containerd_config(ctx, registry)
    cbin = containerd_bin()
    (ctx.dir / "containerd" / "bin-dir").write_text(f"{cbin}\n")
    procs["containerd"] = ctx.spawn(
        "containerd",
        [str(cbin / "containerd"), f"--config={ctx.dir / 'containerd' / 'config.toml'}"],
        # Its runc shim is found on PATH, runc itself too (Debian's, /usr/sbin).
        env={"PATH": f"{cbin}:/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin"},
    )
    _wait("containerd", lambda: ctx.sock.exists(), deadline, procs, ctx)
    (ctx.dir / "cni" / "net.d" / "10-bgjob.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": ctx.network,
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": ctx.bridge,
                        "isGateway": False,
                        "ipMasq": False,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": f"{subnet}.0/24", "gateway": f"{subnet}.1"}]],
                            # Only the Service address goes through the host: no default route.
                            "routes": [{"dst": f"{SERVICE_IP}/32", "gw": f"{subnet}.1"}],
                            "dataDir": str(ctx.dir / "cni" / "ipam"),
                        },
                    }
                ],
            },
            indent=1,
        )
    )

    _kubelet_pki(ctx, server)
    _kubelet_config(ctx, kubelet_port, healthz_port)
    procs["kubelet"] = ctx.spawn(
        "kubelet",
        [
            str(bindir / "kubelet"),
            f"--config={ctx.dir / 'kubelet' / 'config.yaml'}",
            f"--kubeconfig={ctx.dir / 'kubelet' / 'kubelet.kubeconfig'}",
            f"--root-dir={ctx.dir / 'kubelet' / 'root'}",
            f"--cert-dir={ctx.dir / 'kubelet' / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-labels={LABEL}",
            "--v=1",
        ],
        env={"PATH": KUBELET_PATH},
    )
    info["kubelet_healthz"] = f"http://127.0.0.1:{healthz_port}/healthz"
    _wait("the kubelet's healthz", lambda: _http_ok(info["kubelet_healthz"]), deadline, procs, ctx)
    ctx.log(
        f"real node: registry {registry}, images pushed in {t_images - t0:.1f}s, "
        f"containerd+kubelet healthy {time.monotonic() - t_images:.1f}s later"
    )
    return info


HACK = Path(__file__).resolve().parent


def _http_ok(url: str) -> bool:
    try:
        with LOCAL.open(url, timeout=1) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _wait(
    what: str, check: Callable[[], bool], deadline: float, procs: dict[str, Any], ctx: Ctx
) -> None:
    while not check():
        for name, p in procs.items():
            if p.poll() is not None:
                raise RealNodeError(
                    f"{name} exited with {p.returncode} while waiting for {what}; "
                    f"see {ctx.logs / (name + '.log')}"
                )
        if time.monotonic() > deadline:
            raise RealNodeError(f"timed out waiting for {what}; logs in {ctx.logs}")
        time.sleep(0.1)


def _make_bridge(ctx: Ctx, subnet: str) -> None:
    # Created here, with the host's address on it, so that the CNI plugin can
    # run without isGateway (which would set net.ipv4.ip_forward=1).
    if run("ip", "link", "show", ctx.bridge, check=False).returncode != 0:
        run("ip", "link", "add", "name", ctx.bridge, "type", "bridge")
    # A fixed MAC: otherwise the bridge takes the lowest MAC of its ports and
    # changes it when that pod goes away, and every other pod keeps sending to
    # the old one (its ARP entry for the host) for half a minute: the host and
    # the API server unreachable. Locally administered, derived from the node id.
    mac = "02:62:67:" + ":".join(ctx.node_id[i : i + 2] for i in (0, 2, 4))
    run("ip", "link", "set", "dev", ctx.bridge, "address", mac)
    run("ip", "addr", "replace", f"{subnet}.1/24", "dev", ctx.bridge)
    run("ip", "link", "set", ctx.bridge, "up")


def _cgroup_mounts() -> list[Path]:
    """Mount points of every cgroup hierarchy: the kubelet manages the v1 ones
    and, on a hybrid host like these, mirrors its tree in the unified one."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] in ("cgroup", "cgroup2"):
            out.append(Path(left.split()[4]))
    return out


def _make_cgroups(ctx: Ctx) -> None:
    # The kubelet requires its cgroup root to exist in every hierarchy.
    for m in _cgroup_mounts():
        d = m / ctx.cgroup
        d.mkdir(exist_ok=True)
        if (m / "cpuset.cpus").exists():
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not (d / f).read_text().strip():
                    (d / f).write_text((m / f).read_text())


def _containerd_config(ctx: Ctx, registry: str) -> None:
    c = ctx.dir / "containerd"
    certs = c / "certs.d" / registry
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "hosts.toml").write_text(
        f'server = "http://{registry}"\n'
        f'[host."http://{registry}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    (c / "config.toml").write_text(f"""# containerd 2.x (hack/containerd.sh): config version 4.
version = 4
root = "{c / "root"}"
state = "{c / "state"}"
# Nothing from the host's /etc/containerd/conf.d.
imports = []
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs",
                    "io.containerd.snapshotter.v1.blockfile",
                    # NRI would listen on /var/run/nri/nri.sock, outside our state dir.
                    "io.containerd.nri.v1.nri"]
[debug]
  level = "warn"
[plugins."io.containerd.server.v1.grpc"]
  address = "{ctx.sock}"
[plugins."io.containerd.server.v1.ttrpc"]
  address = "{ctx.sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{c / "opt"}"
[plugins."io.containerd.image-verifier.v1.bindir"]
  bin_dir = "{c / "image-verifier"}"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{registry}/pause:1"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{c / "certs.d"}"
[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  # Required on these VMs: no CAP_SYS_RESOURCE in the bounding set, so runc
  # cannot lower oom_score_adj below containerd's own (see docs/real-node).
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{ctx.dir / "cni" / "net.d"}"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{c / "runc"}"
""")


def _kubelet_pki(ctx: Ctx, server: str) -> None:
    client = (
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n"
    )
    ctx.cert("kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}", client)
    ctx.write_kubeconfig(ctx.dir / "kubelet" / "kubelet.kubeconfig", server, "kubelet")


def apiserver_flags(pki: Path) -> list[str]:
    """What the apiserver needs to reach the kubelet (logs, exec): a client
    identity the kubelet's webhook authorizer accepts, and the node's Hostname
    address first (`localhost`, so the kubelet can listen on 127.0.0.1 only)."""
    return [
        f"--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt",
        f"--kubelet-client-key={pki}/apiserver-kubelet-client.key",
        "--kubelet-preferred-address-types=Hostname,InternalIP,ExternalIP",
    ]


def _kubelet_config(ctx: Ctx, port: int, healthz_port: int) -> None:
    k = ctx.dir / "kubelet"
    cfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{ctx.cgroup}",
        "containerRuntimeEndpoint": f"unix://{ctx.sock}",
        "address": "127.0.0.1",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ctx.pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(k / "pod-logs"),
        "failSwapOn": False,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        "resolvConf": "",  # pods get no DNS here (no cluster DNS, no route out)
        "serializeImagePulls": False,
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "0s",
        "staticPodPath": "",
    }
    (k / "config.yaml").write_text(json.dumps(cfg, indent=1))


# --- stop --------------------------------------------------------------------


def stop(ctx: Ctx, kubectl: list[str] | None) -> None:
    """Stop the real node and undo its host side effects. Works on a healthy
    node, on a half-started one and after a killed run (from the state dir)."""
    if kubectl and ctx.alive("kubelet"):
        # Let the kubelet tear pods down itself (CNI DEL, unmounts, netns).
        r = subprocess.run(
            [
                *kubectl,
                "delete",
                "pods",
                "--all-namespaces",
                "--all",
                f"--field-selector=spec.nodeName={NODE_NAME}",
                "--grace-period=0",
                "--force",
                "--wait=false",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if r.returncode == 0:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and _containers_left(ctx):
                time.sleep(0.2)
    for name in ("kubelet",):
        ctx.stop(name)
    _kill_tasks(ctx)
    for name in ("containerd", "api-forwarder", "registry"):
        ctx.stop(name)
    _kill_shims(ctx)
    _unmount_under(ctx.dir)
    with host_lock():
        _undo_host(ctx)


def _containers_left(ctx: Ctx) -> bool:
    r = subprocess.run(
        [*_ctr(ctx), "tasks", "ls", "-q"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return r.returncode == 0 and bool(r.stdout.strip())


def _kill_tasks(ctx: Ctx) -> None:
    if not ctx.alive("containerd"):
        return
    ctr = _ctr(ctx)
    with contextlib.suppress(subprocess.TimeoutExpired):
        tasks = run(*ctr, "tasks", "ls", "-q", check=False, timeout=10).stdout.split()
        for t in tasks:
            run(*ctr, "tasks", "kill", "-s", "SIGKILL", t, check=False, timeout=10)
        for t in tasks:
            run(*ctr, "tasks", "delete", "-f", t, check=False, timeout=10)


def _kill_shims(ctx: Ctx) -> None:
    """Shims outlive containerd by design; ours are the ones started with our
    socket. SIGKILL kills each shim's containers with it (they are in its
    subreaper tree only loosely, so kill their process groups too)."""
    needle = f"-address\0{ctx.sock}\0".encode()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmd and needle in cmd + b"\0":
            pid = int(p.name)
            sockets = _unix_sockets(pid)
            for child in _children(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            # A killed shim leaves its socket in /run/containerd/s.
            for path in sockets:
                if path.startswith("/run/containerd/"):
                    with contextlib.suppress(OSError):
                        os.unlink(path)


def _unix_sockets(pid: int) -> list[str]:
    """Paths of the unix sockets a process has open."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    paths = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes:
            paths.append(fields[7].lstrip("@"))
    return paths


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                out.append(int(p.name))
                out.extend(_children(int(p.name)))
    return out


def _unmount_under(root: Path) -> None:
    """Unmount everything mounted at or below root, deepest first (the kubelet
    bind-mounts its root dir onto itself; containerd mounts netns, rootfs and
    shm under its state dir)."""
    prefix = str(root)
    for _ in range(5):
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mp = line.split()[4].replace("\\040", " ")
            if mp == prefix or mp.startswith(prefix + "/"):
                mounts.append(mp)
        if not mounts:
            return
        for mp in sorted(set(mounts), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True, timeout=10)


def _undo_host(ctx: Ctx) -> None:
    run("ip", "link", "del", ctx.bridge, check=False)
    for m in _cgroup_mounts():
        _rmdir_tree(m / ctx.cgroup)
    # Our entries in the shared host dirs.
    logs = str(ctx.dir / "kubelet" / "pod-logs")
    containers = Path("/var/log/containers")
    if containers.is_dir():
        for link in containers.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(logs):
                    link.unlink()
    results = Path("/var/lib/cni/results")
    if results.is_dir():
        # libcni's cache: <network>-<sandbox id>-<ifname>, also for containerd's
        # own "cni-loopback" network, so match our sandbox ids too.
        ours = _sandbox_ids(ctx)
        for f in results.iterdir():
            if f.name.startswith(f"{ctx.network}-") or any(i in f.name for i in ours):
                f.unlink(missing_ok=True)
    (HOST_DIR / f"node-{ctx.node_id}.json").unlink(missing_ok=True)
    if _others(ctx):
        return
    # The last real node on this host: remove what the first one created.
    with contextlib.suppress(OSError, ValueError):
        created = json.loads((HOST_DIR / "shared-dirs-created").read_text())
        sock = Path("/var/lib/kubelet/device-plugins/kubelet.sock")
        if str(sock.parent) in created:
            sock.unlink(missing_ok=True)
        for d in SHARED_DIRS:  # deepest listed first
            if str(d) in created and d.is_dir():
                with contextlib.suppress(OSError):
                    d.rmdir()  # only if empty: never someone else's files
        (HOST_DIR / "shared-dirs-created").unlink(missing_ok=True)


def _sandbox_ids(ctx: Ctx) -> set[str]:
    """Pod sandboxes this node's containerd ever had (its root survives a kill)."""
    ids: set[str] = set()
    for d in ("root", "state"):
        sandboxes = ctx.dir / "containerd" / d / "io.containerd.grpc.v1.cri" / "sandboxes"
        if sandboxes.is_dir():
            ids.update(p.name for p in sandboxes.iterdir() if len(p.name) == 64)
    return ids


def _rmdir_tree(d: Path) -> None:
    if not d.is_dir():
        return
    for sub in d.iterdir():
        if sub.is_dir():
            _rmdir_tree(sub)
    for _ in range(50):  # a cgroup whose last task just died can be busy briefly
        try:
            d.rmdir()
            return
        except OSError:
            time.sleep(0.1)


# --- the API forwarder (a process of its own: `python3 realnode.py forward`) ----


def forward(device: str, listen: str, target: str) -> None:
    """Relay TCP connections arriving on `device` at `listen` to `target`.

    SO_BINDTODEVICE lets each cluster's forwarder bind the same Service address
    on its own bridge."""
    import asyncio

    host, port = listen.rsplit(":", 1)
    to_host, to_port = target.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(to_host, int(to_port)), timeout=10
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def main() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        sock.bind((host, int(port)))
        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "forward":
        forward(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        print(
            "usage: realnode.py forward DEVICE LISTEN_HOST:PORT TARGET_HOST:PORT", file=sys.stderr
        )
        sys.exit(2)
