"""`bgjob-operator run | crd | render | version`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import yaml

from bgjob import __version__, logs
from bgjob.api.admission import (
    MAX_BYTES,
    ManifestError,
    admit,
    is_backgroundjob,
    load_documents,
)
from bgjob.api.crd import NoAliasDumper, crd_yaml
from bgjob.api.models import KIND, InvalidSpec
from bgjob.scaling import network

log = logging.getLogger("bgjob.cli")


def _networks(value: str) -> tuple[network.Network, ...]:
    try:
        return network.parse_networks(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


# --- run ------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Start the operator until SIGTERM or SIGINT."""
    import kopf
    from prometheus_client import start_http_server

    from bgjob.events import SENDERS
    from bgjob.handlers import Runtime, build_registry, scaling_engine
    from bgjob.kube import Kube, load_config
    from bgjob.leader import LeaderElector, default_identity

    logs.configure(args.log_level, args.log_format)
    network.set_default_policy(network.NetworkPolicy(args.deny_networks))
    namespaces = tuple(args.namespace or ())
    identity = default_identity()
    # The user agent names this process, so the API server's audit log tells replicas apart.
    # A connection for every worker, every watch (child kinds and BackgroundJobs, per
    # namespace), every Event sender, and a few more (the Lease, the scaler): a worker
    # never waits for a connection, and none is opened and dropped per request.
    pool = args.workers + 6 * max(1, len(namespaces)) + SENDERS + 4
    kube = Kube(
        load_config(user_agent=f"bgjob-operator/{__version__} ({identity})", pool_size=pool)
    )
    elector = None
    if args.leader_elect:
        elector = LeaderElector(
            kube,
            namespace=args.leader_election_namespace,
            name=args.leader_election_id,
            identity=identity,
        )
    engine, keda_installed = scaling_engine(kube, args.scaling_engine)
    runtime = Runtime(
        kube=kube,
        workers=args.workers,
        namespaces=namespaces,
        elector=elector,
        scaling_engine=engine,
        keda_installed=keda_installed,
        resync_seconds=args.resync_seconds,
        watch_seconds=(max(1, args.watch_timeout_seconds * 4 // 5), args.watch_timeout_seconds),
    )
    registry = build_registry(runtime)
    metrics_host, metrics_port = _address(args.metrics_address)
    start_http_server(metrics_port, addr=metrics_host)
    health_host, health_port = _address(args.health_address)
    log.info(
        "starting version=%s namespaces=%s scaling_engine=%s denied_networks=%s "
        "health=%s:%d metrics=%s:%d",
        __version__,
        ",".join(namespaces) or "*",
        engine,
        ",".join(str(n) for n in args.deny_networks) or "none",
        health_host,
        health_port,
        metrics_host,
        metrics_port,
    )
    asyncio.run(
        kopf.operator(
            registry=registry,
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            # kopf handles SIGTERM and SIGINT: cleanup handlers run, then it returns.
            liveness_endpoint=f"http://{health_host}:{health_port}/healthz",
            # Losing the Lease stops the operator; it exits non-zero to be restarted.
            stop_flag=runtime.stopped,
        )
    )
    if runtime.lost.is_set():
        log.error("stopped: lost leadership")
        _exit_now(1)
    log.info("stopped")
    _exit_now(0)


def _exit_now(code: int) -> NoReturn:
    """Exit without the interpreter's teardown: freeing a cache of thousands of objects
    one by one took seconds after SIGTERM, with nothing left to do (everything was
    stopped and the Lease released)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# --- crd ------------------------------------------------------------------------------


def cmd_crd(_: argparse.Namespace) -> int:
    """Print the CRD generated from the models."""
    sys.stdout.write(crd_yaml())
    return 0


# --- render ---------------------------------------------------------------------------


# What kubectl reads from a directory given to -f.
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _files(name: str) -> list[Path]:
    path = Path(name)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file())
        if not found:
            raise ManifestError("a directory without .yaml, .yml or .json files")
        return found
    if not path.exists():
        raise ManifestError("no such file")
    return [path]


def _read(path: Path) -> bytes:
    with path.open("rb") as stream:
        return stream.read(MAX_BYTES + 1)


def _documents(paths: Sequence[str]) -> Iterator[tuple[str, Any]]:
    """(source, document) for every document; (source, ManifestError) for unreadable input."""
    for name in paths:
        try:
            if name == "-":
                sources = [(name, sys.stdin.buffer.read(MAX_BYTES + 1))]
            else:
                sources = [(str(path), _read(path)) for path in _files(name)]
            for source, data in sources:
                for doc in load_documents(data):
                    yield source, doc
        except ManifestError as error:
            yield name, error
        except OSError as error:
            yield name, ManifestError(error.strerror or str(error))


def render(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects the operator would create for these BackgroundJobs, before any run."""
    from bgjob import workloads
    from bgjob.workloads.runs import run_job

    out: list[dict[str, Any]] = []
    for doc in docs:
        bgj = admit(doc)
        workload = workloads.workload(bgj)
        if workload is not None:
            out.append(workload)
        if bgj.spec.trigger.kind == "once":
            out.append(run_job(bgj, bgj.metadata.name, "once"))
    return out


def cmd_render(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the children of the BackgroundJobs in the given files, or the errors."""
    out = out or sys.stdout
    objects: list[dict[str, Any]] = []
    failed = False
    rendered = 0
    for source, doc in _documents(args.filename):
        if isinstance(doc, ManifestError):
            print(f"error: {source}: {doc}", file=sys.stderr)
            failed = True
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            print(
                f"error: {source}: not a Kubernetes object (apiVersion and kind)", file=sys.stderr
            )
            failed = True
            continue
        if not is_backgroundjob(doc):
            continue  # other kinds: not ours to render
        meta = doc.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        rendered += 1
        try:
            objects.extend(render([doc]))
        except InvalidSpec as error:
            print(f"error: {source}: {KIND} {name or '?'}: {error}", file=sys.stderr)
            failed = True
        except Exception as error:  # never a traceback, whatever the input
            print(
                f"error: {source}: {KIND} {name or '?'}: cannot render: {error!r}", file=sys.stderr
            )
            failed = True
    if not rendered and not failed:
        print(f"error: no {KIND} in {', '.join(args.filename)}", file=sys.stderr)
        return 1
    if failed:
        return 1
    yaml.dump_all(objects, out, Dumper=NoAliasDumper, sort_keys=False)
    return 0


# --- version --------------------------------------------------------------------------


def cmd_version(_: argparse.Namespace) -> int:
    """Print the version."""
    print(f"bgjob-operator {__version__}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(prog="bgjob-operator", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    run.add_argument("--health-address", default="127.0.0.1:8080", help="/healthz listens here")
    run.add_argument("--metrics-address", default="127.0.0.1:9090", help="/metrics listens here")
    run.add_argument(
        "--workers",
        type=int,
        default=32,
        help="reconciles at once (mostly waiting on the API server, so more than the cores)",
    )
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=600.0,
        help="queue every BackgroundJob again this often, to heal what a watch missed "
        "(an unchanged one writes nothing)",
    )
    run.add_argument(
        "--watch-timeout-seconds",
        type=int,
        default=300,
        help="the API server ends each watch after 80-100%% of this; it is then resumed",
    )
    run.add_argument("--log-level", default="info", help="debug, info, warning, error")
    run.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default="text",
        help="text: logfmt, one event per line; json: one JSON object per line",
    )
    run.add_argument(
        "--leader-elect",
        action="store_true",
        help="act only while holding a coordination.k8s.io Lease (for more than one replica)",
    )
    run.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the Lease (default: $POD_NAMESPACE or default)",
    )
    run.add_argument("--leader-election-id", default="bgjob-operator", help="name of the Lease")
    run.add_argument(
        "--scaling-engine",
        choices=("builtin", "keda"),
        default="builtin",
        help="who scales queue workers: the built-in scaler, or KEDA through ScaledObjects "
        "(needs KEDA's CRDs; without them the operator warns and uses builtin)",
    )
    run.add_argument(
        "--deny-networks",
        type=_networks,
        default=network.parse_networks(network.DEFAULT_DENIED),
        metavar="CIDR,...",
        help="networks the operator never dials for a BackgroundJob's queue, checked on every "
        "resolved address (IPv4-mapped forms too); replaces the default "
        f"{','.join(network.DEFAULT_DENIED)} (link-local: cloud metadata); '' denies nothing",
    )
    run.set_defaults(handler=cmd_run)

    crd = sub.add_parser("crd", help="print the CustomResourceDefinition")
    crd.set_defaults(handler=cmd_crd)

    rend = sub.add_parser("render", help="print the objects a BackgroundJob becomes")
    rend.add_argument(
        "-f", "--filename", action="append", required=True, help="YAML file, or - for stdin"
    )
    rend.set_defaults(handler=cmd_render)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(handler=cmd_version)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except BrokenPipeError:  # `bgjob-operator render ... | head`
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
