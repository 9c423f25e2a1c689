#!/usr/bin/env python3
"""Local Kubernetes test cluster: real upstream control plane + kwok nodes.

    hack/cluster.sh up       start (idempotent: a healthy cluster is left alone)
    hack/cluster.sh down     stop exactly what `up` started, remove the state
    hack/cluster.sh status   print whether it is up (exit 0 if up, 1 if not)
    hack/cluster.sh env      print `export KUBECONFIG=...` and `export PATH=...`

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as
local processes on 127.0.0.1, on free ports picked at start. kwok plays the
kubelet for three fake nodes (see hack/kwok/stages.yaml for the pod lifecycle).

State lives in $BGJOB_CLUSTER_DIR (default: <repo>/.cluster): the admin
kubeconfig (`kubeconfig`), certificates (`pki/`), etcd data, pid files and the
logs of every component (`logs/`). Binaries come from hack/bins.sh and are
cached outside the repo.

Python 3.11 standard library only; openssl does the certificates.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# hack/realnode.py sits beside this file, also when a test loads this file by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import realnode

HACK = Path(__file__).resolve().parent
REPO = HACK.parent
STATE_DIR = Path(os.environ.get("BGJOB_CLUSTER_DIR") or REPO / ".cluster").resolve()
KUBECONFIG = STATE_DIR / "kubeconfig"
STATE_FILE = STATE_DIR / "state.json"
PKI = STATE_DIR / "pki"
LOGS = STATE_DIR / "logs"
PIDS = STATE_DIR / "pids"

# Started in this order, stopped in reverse.
COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # first address of SERVICE_CIDR: the `kubernetes` Service
POD_CIDR = "10.244.0.0/16"  # kwok hands out fake pod IPs from here
NODES = ["kwok-node-0", "kwok-node-1", "kwok-node-2"]
START_TIMEOUT = 120  # seconds; normally up in well under 30
# Audit log of what ServiceAccounts do (the operator's least-privilege test reads
# it): metadata only, no bodies, nothing from the cluster's own components.
AUDIT_LOG = LOGS / "audit.log"
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
"""

# Everything we talk to is on loopback: never route it through an HTTP(S)_PROXY
# from the environment (urllib, unlike Go, would).
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(msg: str) -> None:
    print(f"cluster: {msg}", file=sys.stderr, flush=True)


class ClusterError(Exception):
    pass


# --- processes -------------------------------------------------------------


def proc_start_time(pid: int) -> str | None:
    """Kernel start time of a pid (field 22 of /proc/<pid>/stat), or None if it
    is gone or a zombie. Recorded with each pid so `down` can never signal an
    unrelated process that happens to reuse the number."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # exited, waiting to be reaped by whoever adopted it
        return None
    return fields[19]


def recorded(name: str) -> tuple[int, str] | None:
    try:
        pid, start = (PIDS / f"{name}.pid").read_text().split()
        return int(pid), start
    except (OSError, ValueError):
        return None


def alive(name: str) -> bool:
    rec = recorded(name)
    return rec is not None and proc_start_time(rec[0]) == rec[1]


def spawn(name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    # A new session: the components outlive this script and don't get the
    # terminal's Ctrl-C; `down` stops them by recorded pid.
    with open(LOGS / f"{name}.log", "ab") as logf:
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=STATE_DIR,
        )
    start = None
    for _ in range(100):  # /proc entry appears immediately, but be safe
        start = proc_start_time(p.pid)
        if start:
            break
        time.sleep(0.01)
    if not start:
        raise ClusterError(f"{name} exited at once; see {LOGS / (name + '.log')}")
    (PIDS / f"{name}.pid").write_text(f"{p.pid} {start}\n")
    return p


def stop_all() -> None:
    """SIGTERM each recorded process (reverse start order), wait, then SIGKILL."""
    for name in reversed(COMPONENTS):
        stop_one(name)


def stop_one(name: str) -> None:
    """SIGTERM one recorded process, wait up to 15 s, then SIGKILL."""
    rec = recorded(name)
    if rec is None:
        return
    pid, start = rec
    if proc_start_time(pid) != start:
        return  # already gone (or the pid now belongs to someone else)
    log(f"stopping {name} (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while proc_start_time(pid) == start and time.monotonic() < deadline:
        reap(pid)
        time.sleep(0.1)
    if proc_start_time(pid) == start:
        log(f"{name} (pid {pid}) ignored SIGTERM; sending SIGKILL")
        os.kill(pid, signal.SIGKILL)
        while proc_start_time(pid) == start:
            reap(pid)
            time.sleep(0.05)
    reap(pid)


def reap(pid: int) -> None:
    # Only our own children (when `up` failed half-way in this same process)
    # can be reaped here; others are reaped by whoever adopted them.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# --- certificates ----------------------------------------------------------


def openssl(*args: str) -> None:
    r = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args)} failed:\n{r.stderr}")


def make_pki() -> None:
    """A throwaway CA and the certs/keys the components need. EC P-256 keys:
    generated in milliseconds, accepted everywhere (incl. ES256 SA tokens)."""
    PKI.mkdir(parents=True, exist_ok=True)
    ec = EC_KEY
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        f"{PKI}/ca.key",
        "-out",
        f"{PKI}/ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=bgjob-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )

    client = (
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n"
    )
    sans = ",".join(
        [
            "IP:127.0.0.1",
            f"IP:{SERVICE_IP}",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    cert(
        "apiserver",
        "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n",
    )
    # Client identities; RBAC's bootstrap policy knows the system:* users.
    cert("admin", "/O=system:masters/CN=kubernetes-admin", client)
    cert("controller-manager", "/CN=system:kube-controller-manager", client)
    cert("scheduler", "/CN=system:kube-scheduler", client)
    cert("kwok", "/O=system:masters/CN=kwok", client)  # plays every kubelet
    # The apiserver's identity towards the real node's kubelet (logs, exec).
    cert("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", client)
    # Service-account token signing key pair.
    openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-out",
        f"{PKI}/sa.key",
    )
    openssl("pkey", "-in", f"{PKI}/sa.key", "-pubout", "-out", f"{PKI}/sa.pub")
    for f in PKI.iterdir():
        if f.suffix == ".key":
            f.chmod(0o600)


EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def cert(name: str, subj: str, ext: str) -> None:
    """Issue PKI/<name>.{key,crt} signed by the cluster CA."""
    openssl(
        "req",
        "-new",
        *EC_KEY,
        "-keyout",
        f"{PKI}/{name}.key",
        "-out",
        f"{PKI}/{name}.csr",
        "-subj",
        subj,
    )
    (PKI / f"{name}.ext").write_text(ext)
    openssl(
        "x509",
        "-req",
        "-in",
        f"{PKI}/{name}.csr",
        "-CA",
        f"{PKI}/ca.crt",
        "-CAkey",
        f"{PKI}/ca.key",
        "-CAcreateserial",
        "-days",
        "3650",
        "-out",
        f"{PKI}/{name}.crt",
        "-extfile",
        f"{PKI}/{name}.ext",
    )
    (PKI / f"{name}.key").chmod(0o600)


def write_kubeconfig(path: Path, server: str, user: str) -> None:
    def b64(name: str) -> str:
        return base64.b64encode((PKI / name).read_bytes()).decode()

    # JSON is valid YAML, and this keeps us on the standard library.
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "bgjob-local",
                "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(f"{user}.crt"),
                    "client-key-data": b64(f"{user}.key"),
                },
            }
        ],
        "contexts": [{"name": "bgjob-local", "context": {"cluster": "bgjob-local", "user": user}}],
        "current-context": "bgjob-local",
    }
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    path.chmod(0o600)


# --- health ----------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    # Hold all sockets open until every port is chosen, so they're distinct.
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def api_get(server: str, path: str, timeout: float = 2.0) -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    ctx.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )
    try:
        with opener.open(server + path, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, ssl.SSLError) as e:
        return 0, str(e)


def wait_for(what: str, check, deadline: float, procs: dict | None = None) -> None:
    while True:
        if check():
            return
        for name, p in (procs or {}).items():
            if p.poll() is not None:
                raise ClusterError(
                    f"{name} exited with {p.returncode} while waiting for {what}; "
                    f"see {LOGS / (name + '.log')}"
                )
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out waiting for {what}; logs in {LOGS}")
        time.sleep(0.2)


def load_state() -> dict | None:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None


def healthy(state: dict | None) -> bool:
    if not state or not all(alive(c) for c in COMPONENTS):
        return False
    if state.get("realnode") and not all(alive(c) for c in realnode.COMPONENTS):
        return False
    if realnode.enabled() and not state.get("realnode"):
        return False
    return api_get(state["server"], "/readyz")[0] == 200


# --- commands --------------------------------------------------------------


def bins() -> Path:
    r = subprocess.run([str(HACK / "bins.sh")], stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise ClusterError("hack/bins.sh failed")
    return Path(r.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def locked():
    """Serialise up/down on one state dir (e.g. two make targets at once). The
    lock file lives outside the state dir, which `down` deletes."""
    key = hashlib.sha256(str(STATE_DIR).encode()).hexdigest()[:12]
    with open(Path("/tmp") / f"bgjob-cluster-{key}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def port_clash() -> bool:
    """Did a component lose its port to another process between our choosing
    it and binding it? Then a retry with fresh ports fixes it."""
    for f in LOGS.glob("*.log"):
        if "address already in use" in f.read_text(errors="replace"):
            return True
    return False


def cmd_up() -> None:
    with locked():
        for attempt in (1, 2):
            try:
                _up()
                return
            except ClusterError:
                if attempt == 2 or not port_clash():
                    raise
                log("a port was taken by another process meanwhile; retrying with new ports")
                _down()


def _up() -> None:
    t0 = time.monotonic()
    state = load_state()
    if healthy(state):
        log(f"already up (kubeconfig {KUBECONFIG})")
        return
    if STATE_DIR.exists():
        # Half-started or crashed: start over from a clean slate.
        log(f"found stale state in {STATE_DIR}; cleaning it up first")
        _down()

    bindir = bins()
    if realnode.enabled():
        # Cold, the Python base image and containerd take minutes: not inside
        # START_TIMEOUT.
        build_images()
        try:
            realnode.containerd_bin()
        except realnode.RealNodeError as e:
            raise ClusterError(str(e)) from e
    t_bins = time.monotonic()
    for d in (PKI, LOGS, PIDS, STATE_DIR / "etcd", STATE_DIR / "kwok"):
        d.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    try:
        _start(bindir, procs)
    except BaseException:
        log(
            "start failed; stopping what was started (state and logs kept in "
            f"{STATE_DIR} until the next up/down)"
        )
        stop_realnode(bindir)
        stop_all()
        raise
    log(
        f"up in {time.monotonic() - t0:.1f}s ({time.monotonic() - t_bins:.1f}s after bins.sh); "
        f"export KUBECONFIG={KUBECONFIG}"
    )


def audit_flags() -> list[str]:
    policy = STATE_DIR / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    return [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={AUDIT_LOG}",
        "--audit-log-maxsize=200",  # MiB; one e2e session writes a few
        "--audit-log-maxbackup=1",
    ]


def _start(bindir: Path, procs: dict) -> None:
    make_pki()
    etcd_port, etcd_peer, api_port, kcm_port, sched_port = free_ports(5)
    server = f"https://127.0.0.1:{api_port}"
    state = {"server": server, "bindir": str(bindir), "etcd": f"http://127.0.0.1:{etcd_port}"}
    STATE_FILE.write_text(json.dumps(state, indent=2) + "\n")
    write_kubeconfig(KUBECONFIG, server, "admin")
    for user in ("controller-manager", "scheduler", "kwok"):
        write_kubeconfig(STATE_DIR / f"{user}.kubeconfig", server, user)
    deadline = time.monotonic() + START_TIMEOUT
    b = lambda name: str(bindir / name)  # noqa: E731

    # etcd: plain HTTP, but only on loopback. No fsync: this data is disposable
    # and fsync dominates etcd latency on CI disks.
    etcd_url, peer_url = state["etcd"], f"http://127.0.0.1:{etcd_peer}"
    procs["etcd"] = spawn(
        "etcd",
        [
            b("etcd"),
            "--name=default",
            f"--data-dir={STATE_DIR / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )

    def etcd_ok() -> bool:
        try:
            with LOCAL.open(etcd_url + "/health", timeout=1) as r:
                return json.load(r).get("health") == "true"
        except (OSError, ValueError):
            return False

    wait_for("etcd", etcd_ok, deadline, procs)

    procs["kube-apiserver"] = spawn(
        "kube-apiserver",
        [
            b("kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            # The endpoint reconciler refuses a loopback advertise address; nothing
            # runs in pods here, so the `kubernetes` Service needs no endpoints.
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={PKI}/apiserver.crt",
            f"--tls-private-key-file={PKI}/apiserver.key",
            f"--client-ca-file={PKI}/ca.crt",
            "--authorization-mode=Node,RBAC",
            # On top of the default plugins (which include PodSecurity, whose
            # default level is privileged; namespaces opt in by label).
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",  # so PodSecurity, not this flag, is what rejects
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={PKI}/sa.pub",
            f"--service-account-signing-key-file={PKI}/sa.key",
            "--profiling=false",
            *audit_flags(),
            *realnode.apiserver_flags(PKI),
        ],
    )
    wait_for(
        "kube-apiserver /readyz", lambda: api_get(server, "/readyz")[0] == 200, deadline, procs
    )

    procs["kube-controller-manager"] = spawn(
        "kube-controller-manager",
        [
            b("kube-controller-manager"),
            f"--kubeconfig={STATE_DIR / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={kcm_port}",
            # Every default controller: garbage collector, deployment, replicaset,
            # statefulset, job, cronjob, namespace, serviceaccount(-token),
            # root-ca-cert-publisher, node lifecycle, pod GC, ...
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={PKI}/sa.key",
            f"--root-ca-file={PKI}/ca.crt",
            f"--cluster-signing-cert-file={PKI}/ca.crt",
            f"--cluster-signing-key-file={PKI}/ca.key",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--leader-elect=false",
            "--profiling=false",
            # kwok's fake nodes beat by a node status update every 20-25 s (no
            # Leases; hack/kwok/stages.yaml); on a loaded 2-core machine a beat can
            # come late. Don't mark nodes (and so their pods) NotReady for that.
            "--node-monitor-grace-period=5m",
        ],
    )
    procs["kube-scheduler"] = spawn(
        "kube-scheduler",
        [
            b("kube-scheduler"),
            f"--kubeconfig={STATE_DIR / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={sched_port}",
            "--leader-elect=false",
            "--profiling=false",
        ],
    )
    # kwok: no --server-address/--node-port, so it opens no port at all.
    # KWOK_WORKDIR keeps a user's ~/.kwok/kwok.yaml from leaking in.
    procs["kwok"] = spawn(
        "kwok",
        [
            b("kwok"),
            f"--kubeconfig={STATE_DIR / 'kwok.kubeconfig'}",
            f"--config={HACK / 'kwok' / 'stages.yaml'}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--cidr={POD_CIDR}",
            "--node-ip=127.0.0.1",
        ],
        env={"KWOK_WORKDIR": str(STATE_DIR / "kwok")},
    )

    kubectl = [b("kubectl"), f"--kubeconfig={KUBECONFIG}"]
    apply = subprocess.run(
        [*kubectl, "apply", "-f", "-"], input=nodes_manifest(), capture_output=True, text=True
    )
    if apply.returncode != 0:
        raise ClusterError(f"creating nodes failed:\n{apply.stderr}")

    def default_sa() -> bool:
        return api_get(server, "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200

    def nodes_ready() -> bool:
        code, body = api_get(server, "/api/v1/nodes?labelSelector=type%3Dkwok")
        if code != 200:
            return False
        ready = [
            n
            for n in json.loads(body)["items"]
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready) == len(NODES)

    wait_for("the default ServiceAccount", default_sa, deadline, procs)
    wait_for(f"{len(NODES)} Ready nodes", nodes_ready, deadline, procs)
    if realnode.enabled():
        start_realnode(bindir, state, procs, deadline)
    wait_for(
        "kube-apiserver /readyz", lambda: api_get(server, "/readyz")[0] == 200, deadline, procs
    )


# --- the real node (hack/realnode.py) ----------------------------------------


def realnode_ctx() -> realnode.Ctx:
    return realnode.Ctx(
        state_dir=STATE_DIR,
        pki=PKI,
        logs=LOGS,
        spawn=spawn,
        stop=stop_one,
        alive=alive,
        log=log,
        cert=cert,
        write_kubeconfig=write_kubeconfig,
        free_ports=free_ports,
    )


def start_realnode(bindir: Path, state: dict, procs: dict, deadline: float) -> None:
    """A real kubelet node `localhost` (tainted bgjob.dev/real-node) and the
    local registry; waits until the node is Ready."""
    try:
        info = realnode.start(realnode_ctx(), bindir, state["server"], procs, deadline)
    except realnode.RealNodeError as e:
        raise ClusterError(str(e)) from e
    state["realnode"] = info
    STATE_FILE.write_text(json.dumps(state, indent=2) + "\n")

    def node_ready() -> bool:
        code, body = api_get(state["server"], f"/api/v1/nodes/{realnode.NODE_NAME}")
        if code != 200:
            return False
        conds = json.loads(body).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    t0 = time.monotonic()
    wait_for(f"node {realnode.NODE_NAME} Ready", node_ready, deadline, procs)
    code, body = api_get(state["server"], f"/api/v1/nodes/{realnode.NODE_NAME}")
    node_info = json.loads(body).get("status", {}).get("nodeInfo", {}) if code == 200 else {}
    runtime, kubelet = node_info.get("containerRuntimeVersion"), node_info.get("kubeletVersion")
    log(
        f"real node {realnode.NODE_NAME} Ready {time.monotonic() - t0:.1f}s after its kubelet "
        f"({runtime}, kubelet {kubelet})"
    )


def build_images() -> None:
    r = subprocess.run([str(HACK / "images.sh"), "build"], stdout=subprocess.DEVNULL)
    if r.returncode != 0:
        raise ClusterError("hack/images.sh build failed")


def stop_realnode(bindir: Path | None) -> None:
    if not (STATE_DIR / "realnode").exists():
        return
    kubectl = [str(bindir / "kubectl"), f"--kubeconfig={KUBECONFIG}"] if bindir else None
    try:
        realnode.stop(realnode_ctx(), kubectl if KUBECONFIG.exists() else None)
    except Exception as e:  # the control plane must still stop
        log(f"stopping the real node failed: {e!r}; see hack/README.md for what to clean up")


def kube_version() -> str:
    for line in (HACK / "versions.env").read_text().splitlines():
        if line.startswith("KUBE_VERSION="):
            return line.split("=", 1)[1].strip()
    raise ClusterError("KUBE_VERSION missing from hack/versions.env")


def nodes_manifest() -> str:
    """Fake nodes, managed by kwok because of the annotation. No taints: the
    operator's pods must schedule without special tolerations."""
    items, version = [], kube_version()
    for name in NODES:
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {
                        "kwok.x-k8s.io/node": "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "kubernetes.io/role": "agent",
                        "node-role.kubernetes.io/agent": "",
                    },
                },
                "status": {
                    "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                    "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                    # Report the control plane's version rather than "kwok-0.8.0",
                    # for clients that parse node versions as semver.
                    # (The API wants all nodeInfo fields; kwok fills empty ones.)
                    "nodeInfo": {
                        "kubeletVersion": version,
                        "kubeProxyVersion": version,
                        "architecture": "amd64",
                        "operatingSystem": "linux",
                        "osImage": "",
                        "kernelVersion": "",
                        "containerRuntimeVersion": "",
                        "machineID": "",
                        "systemUUID": "",
                        "bootID": "",
                    },
                },
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def cmd_down() -> None:
    with locked():
        _down()


def _down() -> None:
    if not STATE_DIR.exists():
        log("not running (no state)")
        return
    state = load_state()
    stop_realnode(Path(state["bindir"]) if state else None)
    stop_all()
    shutil.rmtree(STATE_DIR)
    log(f"down; removed {STATE_DIR}")


def cmd_status() -> int:
    state = load_state()
    if healthy(state):
        print(f"up: {state['server']} (KUBECONFIG={KUBECONFIG})")
        return 0
    running = [c for c in COMPONENTS + realnode.COMPONENTS if alive(c)]
    if running:
        print(f"unhealthy: running {', '.join(running)}; logs in {LOGS}")
    else:
        print("down")
    return 1


def cmd_env() -> None:
    state = load_state()
    bindir = state["bindir"] if state else str(bins())
    print(f"export KUBECONFIG={KUBECONFIG}")
    print(f"export PATH={bindir}:$PATH")


def restart(name: str, extra_args: tuple[str, ...] = (), pause: float = 0.0) -> float:
    """Stop one running component and start it again with the same command line
    (plus ``extra_args`` it does not have yet), after ``pause`` seconds down; wait
    until it serves again. For fault tests. Returns the seconds it was down."""
    rec = recorded(name)
    if rec is None or proc_start_time(rec[0]) != rec[1]:
        raise ClusterError(f"{name} is not running")
    pid, start = rec
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    env = dict(e.decode().split("=", 1) for e in environ if b"=" in e)
    argv += [a for a in extra_args if a not in argv]
    stopped = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while proc_start_time(pid) == start and time.monotonic() < deadline:
        reap(pid)
        time.sleep(0.05)
    if proc_start_time(pid) == start:
        os.kill(pid, signal.SIGKILL)
        while proc_start_time(pid) == start:
            reap(pid)
            time.sleep(0.05)
    reap(pid)
    time.sleep(pause)
    state = load_state() or {}
    proc = spawn(name, argv, env)
    deadline = time.monotonic() + START_TIMEOUT
    if name == "kube-apiserver":
        server = state["server"]
        wait_for(name, lambda: api_get(server, "/readyz")[0] == 200, deadline, {name: proc})
    elif name == "etcd":

        def etcd_ok() -> bool:
            try:
                with LOCAL.open(state["etcd"] + "/health", timeout=1) as r:
                    return json.load(r).get("health") == "true"
            except (OSError, ValueError):
                return False

        wait_for(name, etcd_ok, deadline, {name: proc})
    return time.monotonic() - stopped


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("up", "down", "status", "env"):
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        if argv[1] == "up":
            cmd_up()
        elif argv[1] == "down":
            cmd_down()
        elif argv[1] == "status":
            return cmd_status()
        else:
            cmd_env()
    except ClusterError as e:
        log(f"ERROR: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
