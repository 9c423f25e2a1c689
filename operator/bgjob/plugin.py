"""`kubectl bgj`: day-two commands for BackgroundJobs.

    kubectl bgj run-now NAME        start one run of a schedule or once BackgroundJob now
    kubectl bgj suspend NAME        no new runs, workers scaled to zero
    kubectl bgj resume NAME
    kubectl bgj logs NAME           the current run, else the last run, else the workers
    kubectl bgj why NAME            conditions, the workload's own conditions, recent Events
    kubectl bgj render -f FILE      the objects a BackgroundJob becomes (no cluster)

kubectl finds it as the executable `kubectl-bgj` on PATH. It takes kubectl's
`-n/--namespace`, `--context` and `--kubeconfig`; every API call has a deadline.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from bgjob.api.models import GROUP, KIND, PLURAL, VERSION
from bgjob.api.names import (
    CONTAINER_NAME,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    MANAGER,
    RUN_NOW_ANNOTATION,
    Body,
)

TIMEOUT = (5, 30)  # connect, read seconds
RESOURCE = f"{PLURAL}.{GROUP}"


class Failure(Exception):
    """What the user is told on stderr, after `error: `; exit status 1."""


def fail(message: str) -> NoReturn:
    raise Failure(message)


# --- the cluster ---------------------------------------------------------------------------


@dataclass
class Cluster:
    """The few API calls the plugin makes, with the user's kubeconfig and context."""

    api: Any
    namespace: str

    @classmethod
    def connect(cls, args: argparse.Namespace) -> Cluster:
        from kubernetes import config

        kubeconfig = getattr(args, "kubeconfig", None)
        context = getattr(args, "context", None)
        try:
            api = config.new_client_from_config(config_file=kubeconfig, context=context)
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
                active = next((c for c in contexts if c["name"] == context), active)
        except (config.ConfigException, OSError) as error:
            fail(f"cannot load the kubeconfig: {error}")
        namespace = getattr(args, "namespace", None) or (active or {}).get("context", {}).get(
            "namespace"
        )
        return cls(api, namespace or "default")

    def call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(*args, _request_timeout=TIMEOUT, **kwargs)
        except ApiException as error:
            if error.status == 404:
                fail(f'{what} not found in namespace "{self.namespace}"')
            fail(f"{what}: {_api_message(error)}")
        except HTTPError as error:
            fail(f"{what}: cannot reach the API server: {error}")

    def custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api)

    def bgjob(self, name: str) -> Body:
        found: Body = self.call(
            f'{RESOURCE} "{name}"',
            self.custom().get_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
        )
        return found

    def patch_bgjob(self, name: str, patch: Body) -> Body:
        patched: Body = self.call(
            f'{RESOURCE} "{name}"',
            self.custom().patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            patch,
        )
        return patched

    def child(self, kind: str, name: str) -> Body | None:
        from kubernetes import client

        getters = {
            "Deployment": client.AppsV1Api(self.api).read_namespaced_deployment,
            "StatefulSet": client.AppsV1Api(self.api).read_namespaced_stateful_set,
            "CronJob": client.BatchV1Api(self.api).read_namespaced_cron_job,
            "Job": client.BatchV1Api(self.api).read_namespaced_job,
        }
        if kind not in getters:
            return None
        from kubernetes.client.exceptions import ApiException

        try:
            found = getters[kind](name, self.namespace, _request_timeout=TIMEOUT)
        except ApiException as error:
            if error.status == 404:
                return None
            fail(f"{kind} {name}: {_api_message(error)}")
        body: Body = self.api.sanitize_for_serialization(found)
        return body

    def pods(self, selector: str) -> list[Body]:
        found = self.call(
            "pods", self.core().list_namespaced_pod, self.namespace, label_selector=selector
        )
        items: list[Body] = self.api.sanitize_for_serialization(found).get("items") or []
        return sorted(items, key=lambda p: (p["metadata"].get("creationTimestamp", ""), _name(p)))

    def events(self, kind: str, name: str) -> list[Body]:
        found = self.call(
            "events",
            self.core().list_namespaced_event,
            self.namespace,
            field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
        )
        items: list[Body] = self.api.sanitize_for_serialization(found).get("items") or []
        return items

    def log(self, pod: str, tail: int | None) -> str:
        """A pod's log, or Failure with what the API server said."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        kwargs: dict[str, Any] = {"container": CONTAINER_NAME, "_request_timeout": TIMEOUT}
        if tail is not None:
            kwargs["tail_lines"] = tail
        try:
            text: str = self.core().read_namespaced_pod_log(pod, self.namespace, **kwargs)
        except ApiException as error:
            fail(_api_message(error))
        except HTTPError as error:
            fail(f"cannot reach the API server: {error}")
        return text


def _api_message(error: Any) -> str:
    """The server's own message from an ApiException, else its status line."""
    import json

    try:
        message = json.loads(error.body).get("message")
    except (TypeError, ValueError, AttributeError):
        message = None
    return str(message or f"{error.status} {error.reason}".strip())


def _name(obj: Body) -> str:
    return str(obj["metadata"]["name"])


def _trigger(bgj: Body) -> str:
    trigger = (bgj.get("spec") or {}).get("trigger") or {}
    return next(iter(trigger), "")


# --- run-now, suspend, resume -------------------------------------------------------------


def run_now_value(annotation: str | None, handled: str | None, now: float) -> str:
    """A run-now value the operator has not handled: the time in seconds, or one more
    than the last numeric value if that is ahead (two requests in one second)."""
    numbers = [int(v) for v in (annotation, handled) if v is not None and v.strip().isdigit()]
    return str(max([int(now), *(n + 1 for n in numbers)]))


def cmd_run_now(cluster: Cluster, args: argparse.Namespace) -> int:
    from bgjob.api.models import parse
    from bgjob.workloads.runs import manual_run_name

    bgj = cluster.bgjob(args.name)
    trigger = _trigger(bgj)
    if trigger not in ("schedule", "once"):
        fail(f"run-now applies to schedule and once BackgroundJobs; {args.name} is {trigger}")
    value = run_now_value(
        (bgj["metadata"].get("annotations") or {}).get(RUN_NOW_ANNOTATION),
        (bgj.get("status") or {}).get("runNowHandled"),
        time.time(),
    )
    patched = cluster.patch_bgjob(
        args.name, {"metadata": {"annotations": {RUN_NOW_ANNOTATION: value}}}
    )
    run = manual_run_name(parse(patched), value)
    print(f"{RESOURCE}/{args.name} run requested ({RUN_NOW_ANNOTATION}={value})")
    if args.timeout <= 0:
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if cluster.child("Job", run) is not None:
            print(f"started run {run}")
            return 0
        current = cluster.bgjob(args.name)
        if (current.get("status") or {}).get("runNowHandled") == value:
            refused = [
                e
                for e in cluster.events(KIND, args.name)
                if e.get("reason") in ("RunNowSkipped", "RunNowIgnored")
            ]
            if refused:
                fail(f"run not started: {_latest(refused).get('message', '')}")
        time.sleep(0.5)
    fail(f"run {run} did not start within {args.timeout:g}s (is the operator running?)")


def _set_suspend(cluster: Cluster, name: str, suspend: bool) -> int:
    word = "suspended" if suspend else "resumed"
    bgj = cluster.bgjob(name)
    if bool((bgj.get("spec") or {}).get("suspend")) == suspend:
        print(f"{RESOURCE}/{name} already {word}")
        return 0
    cluster.patch_bgjob(name, {"spec": {"suspend": suspend}})
    print(f"{RESOURCE}/{name} {word}")
    return 0


def cmd_suspend(cluster: Cluster, args: argparse.Namespace) -> int:
    return _set_suspend(cluster, args.name, True)


def cmd_resume(cluster: Cluster, args: argparse.Namespace) -> int:
    return _set_suspend(cluster, args.name, False)


# --- logs ----------------------------------------------------------------------------------


def pick_pods(bgj: Body, pods: list[Body], which: str) -> tuple[str, list[Body]]:
    """Which pods to read for ``which`` (auto, current, last, workers), and what they are.

    auto: the active run, else the last run for schedule/once; the workers otherwise.
    """
    status = bgj.get("status") or {}
    active = status.get("activeRuns") or []
    last = (status.get("lastRun") or {}).get("name")
    if which == "auto":
        if _trigger(bgj) in ("schedule", "once"):
            which = "current" if active else "last"
        else:
            which = "workers"

    def job_of(pod: Body) -> str | None:
        labels = pod["metadata"].get("labels") or {}
        return labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")

    if which == "workers":
        return "the workers", [p for p in pods if job_of(p) is None]
    if which == "current":
        if not active:
            fail(f"{_name(bgj)} has no run in progress (try --last)")
        run = str(active[-1])
        return f"run {run}", [p for p in pods if job_of(p) == run]
    if not last:
        fail(f"{_name(bgj)} has no finished run yet")
    return f"run {last}", [p for p in pods if job_of(p) == last]


def cmd_logs(cluster: Cluster, args: argparse.Namespace) -> int:
    bgj = cluster.bgjob(args.name)
    selector = f"{LABEL_INSTANCE}={args.name},{LABEL_MANAGED_BY}={MANAGER}"
    what, pods = pick_pods(bgj, cluster.pods(selector), args.which)
    if not pods:
        fail(f"{what} of {args.name} has no pods (finished runs keep theirs only as long as "
             "the Job is kept: spec.history and run.ttlSecondsAfterFinished)")  # fmt: skip
    prefix = len(pods) > 1
    failures = 0
    for pod in pods:
        try:
            text = cluster.log(_name(pod), args.tail)
        except Failure as error:
            failures += 1
            phase = (pod.get("status") or {}).get("phase", "Unknown")
            print(
                f"error: no logs from pod {_name(pod)} ({what}, phase {phase}): {error}",
                file=sys.stderr,
            )
            continue
        for line in text.splitlines():
            print(f"[pod/{_name(pod)}] {line}" if prefix else line)
    return 1 if failures else 0


# --- why -----------------------------------------------------------------------------------


def _age(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "?"
    seconds = int((now - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _latest(events: list[Body]) -> Body:
    return max(events, key=_event_time)


def _event_time(event: Body) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        indent + "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]


def explain(
    bgj: Body, child: Body | None, events: list[Body], now: datetime
) -> list[str]:  # fmt: skip
    """The lines `why` prints: the answer first, then the evidence. Pure."""
    meta, status = bgj["metadata"], bgj.get("status") or {}
    name = _name(bgj)
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready")
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    lines = []
    if not status:
        lines.append(f"{name} has no status yet: is the operator running?")
    elif generation is not None and (observed is None or observed < generation):
        lines.append(
            f"{name}: the operator has not yet seen generation {generation} "
            f"(the status is for generation {observed})"
        )
    elif ready is None:
        lines.append(f"{name} has no Ready condition yet")
    elif ready.get("status") == "True":
        lines.append(f"{name} is Ready: {ready.get('message', '')}")
    else:
        lines.append(f"{name} is not Ready: {ready.get('reason', '')}: {ready.get('message', '')}")
    degraded = conditions.get("Degraded")
    if (
        degraded is not None
        and degraded.get("status") == "True"
        and degraded.get("reason") != (ready or {}).get("reason")
    ):
        lines.append(f"Degraded: {degraded.get('reason', '')}: {degraded.get('message', '')}")
    lines.append(f"State: {status.get('state', '?')}   Trigger: {_trigger(bgj) or '?'}")
    if conditions:
        lines.append("Conditions:")
        rows = [["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]]
        for c in conditions.values():
            rows.append(
                [
                    str(c.get("type", "")),
                    str(c.get("status", "")),
                    str(c.get("reason", "")),
                    _age(c.get("lastTransitionTime"), now),
                    str(c.get("message", "")),
                ]
            )
        lines.extend(_table(rows))
    workload = status.get("workload") or {}
    if workload:
        label = f"{workload.get('kind')} {workload.get('name')}"
        if child is None:
            lines.append(f"Workload: {label} (not found)")
        else:
            lines.append(f"Workload: {label}")
            lines.extend(_child_lines(child, now))
    last = status.get("lastRun") or {}
    if status.get("activeRuns"):
        lines.append(f"Active runs: {', '.join(status['activeRuns'])}")
    if last:
        detail = f"{last.get('name')} {last.get('result') or 'running'}"
        if last.get("reason") and last.get("result") == "Failed":
            detail += f": {last['reason']}"
            if last.get("message"):
                detail += f": {last['message']}"
        lines.append(f"Last run: {detail}")
    lines.append("Events:" if events else "Events: none")
    if events:
        rows = [["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]]
        for e in sorted(events, key=_event_time)[-10:]:
            involved = e.get("involvedObject") or {}
            rows.append(
                [
                    _age(_event_time(e) or None, now),
                    str(e.get("type", "")),
                    str(e.get("reason", "")),
                    f"{involved.get('kind', '').lower()}/{involved.get('name', '')}",
                    str(e.get("message", "")).strip(),
                ]
            )
        lines.extend(_table(rows))
    return lines


def _child_lines(child: Body, now: datetime) -> list[str]:
    status = child.get("status") or {}
    conditions = status.get("conditions") or []
    out = []
    counts = [
        f"{key}={status[key]}"
        for key in ("replicas", "readyReplicas", "updatedReplicas", "active", "failed")
        if status.get(key) is not None
    ]
    if counts:
        out.append(f"  {' '.join(counts)}")
    if child.get("kind") == "CronJob":
        spec = child.get("spec") or {}
        out.append(
            f"  schedule={spec.get('schedule')!r} suspend={str(spec.get('suspend')).lower()} "
            f"lastScheduleTime={status.get('lastScheduleTime') or 'never'}"
        )
    if conditions:
        rows = [["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]]
        for c in conditions:
            rows.append(
                [
                    str(c.get("type", "")),
                    str(c.get("status", "")),
                    str(c.get("reason", "")),
                    _age(c.get("lastTransitionTime"), now),
                    str(c.get("message", "")),
                ]
            )
        out.extend(_table(rows, indent="    "))
    return out


def cmd_why(cluster: Cluster, args: argparse.Namespace) -> int:
    bgj = cluster.bgjob(args.name)
    workload = (bgj.get("status") or {}).get("workload") or {}
    child = None
    events = cluster.events(KIND, args.name)
    if workload.get("kind") and workload.get("name"):
        child = cluster.child(workload["kind"], workload["name"])
        events += cluster.events(workload["kind"], workload["name"])
    # The runs' Jobs: why a run failed or did not start is told there.
    status = bgj.get("status") or {}
    runs = [*(status.get("activeRuns") or []), (status.get("lastRun") or {}).get("name")]
    for run in dict.fromkeys(r for r in runs if r and r != workload.get("name")):
        events += cluster.events("Job", run)
    for line in explain(bgj, child, events, datetime.now(UTC)):
        print(line)
    return 0


# --- render and the command line ----------------------------------------------------------


def cmd_render(args: argparse.Namespace) -> int:
    from bgjob.cli import cmd_render as render

    return render(args)


def _connection_flags(defaults: bool) -> argparse.ArgumentParser:
    """kubectl's flags; on subcommands they must not overwrite what the top level got."""
    flags = argparse.ArgumentParser(add_help=False)
    extra: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    flags.add_argument("-n", "--namespace", help="namespace (default: the context's)", **extra)
    flags.add_argument("--context", help="kubeconfig context to use", **extra)
    flags.add_argument("--kubeconfig", help="path to the kubeconfig file", **extra)
    return flags


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kubectl bgj",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_connection_flags(True)],
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    flags = [_connection_flags(False)]

    run_now = sub.add_parser("run-now", parents=flags, help="start one run now")
    run_now.add_argument("name")
    run_now.add_argument(
        "--timeout",
        type=float,
        default=30,
        help="seconds to wait for the run to start; 0: do not wait (default 30)",
    )
    run_now.set_defaults(handler=cmd_run_now)
    for command, handler, text in (
        ("suspend", cmd_suspend, "stop new runs and scale workers to zero"),
        ("resume", cmd_resume, "undo suspend"),
    ):
        cmd = sub.add_parser(command, parents=flags, help=text)
        cmd.add_argument("name")
        cmd.set_defaults(handler=handler)

    logs = sub.add_parser("logs", parents=flags, help="logs of the current run, last run, workers")
    logs.add_argument("name")
    which = logs.add_mutually_exclusive_group()
    which.add_argument("--current", dest="which", action="store_const", const="current")
    which.add_argument("--last", dest="which", action="store_const", const="last")
    which.add_argument("--workers", dest="which", action="store_const", const="workers")
    logs.add_argument("--tail", type=int, default=None, help="lines from the end of each log")
    logs.set_defaults(handler=cmd_logs, which="auto")

    why = sub.add_parser("why", parents=flags, help="why it is (not) Ready")
    why.add_argument("name")
    why.set_defaults(handler=cmd_why)

    rend = sub.add_parser("render", help="print the objects a BackgroundJob becomes")
    rend.add_argument(
        "-f", "--filename", action="append", required=True, help="YAML file, or - for stdin"
    )
    rend.set_defaults(handler=None)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kubectl-bgj` console script."""
    args = parser().parse_args(argv)
    try:
        if args.handler is None:
            return cmd_render(args)
        code: int = args.handler(Cluster.connect(args), args)
    except Failure as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
