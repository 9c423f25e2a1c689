"""The operator's moving parts: informers feed the cache and the work queue; workers reconcile.

Our own informers (``bgjob.informer``) list and watch the BackgroundJobs and each
child kind; kopf gives us login, start-up and clean-up, the health endpoint and
signal handling, and watches nothing (no kopf state is ever written to objects).
Everything is level-triggered: every change of a BackgroundJob or one of its
children queues that BackgroundJob, a pool of workers reconciles queued keys
(never one key twice at once), and a slow periodic resync queues them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from bgjob import metrics
from bgjob.api.models import KIND
from bgjob.api.names import LABEL_MANAGED_BY, MANAGER, Body
from bgjob.api.times import rfc3339
from bgjob.events import EventSender
from bgjob.informer import BackgroundJobSink, ChildSink, Informer, owner_exists
from bgjob.kube import CHILD_KINDS, KEDA_KINDS, RESOURCES, ApiError, Kube, OwnerGone
from bgjob.leader import LeaderElector
from bgjob.reconcile import Reconciler, TransientError
from bgjob.scaling.scaler import Scaler
from bgjob.store import Key, Store, controller_of
from bgjob.workqueue import WorkQueue

log = logging.getLogger("bgjob.operator")

MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGER}"
# Unexpected errors in a row before a BackgroundJob is marked Degraded (ReconcileError).
FAILURES_BEFORE_DEGRADED = 5
DEFAULT_RESYNC_SECONDS = 600.0


def degraded_status(status: dict[str, Any], generation: int, message: str, now: str) -> Body:
    """``status`` with Degraded=True (ReconcileError) and Ready=False, all else kept.

    The whole status is applied again under the same field manager, so no field the
    reconciler wrote is dropped by the apply.
    """
    conditions = [dict(c) for c in status.get("conditions") or [] if isinstance(c, dict)]

    def put(kind: str, value: str) -> None:
        wanted = {
            "type": kind,
            "status": value,
            "reason": "ReconcileError",
            "message": message,
            "observedGeneration": generation,
        }
        for existing in conditions:
            if existing.get("type") == kind:
                same = existing.get("status") == value
                existing.update(wanted)
                if not same or not existing.get("lastTransitionTime"):
                    existing["lastTransitionTime"] = now
                return
        conditions.append({**wanted, "lastTransitionTime": now})

    put("Degraded", "True")
    put("Ready", "False")
    return {**status, "state": "Degraded", "conditions": conditions}


def error_message(error: BaseException, failures: int) -> str:
    """One short line for a status and an Event: never a traceback."""
    text = " ".join(str(error).split())[:300]
    detail = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return f"reconcile failed {failures} times in a row: {detail}"


def scaling_engine(kube: Kube, wanted: str) -> tuple[str, bool]:
    """The engine to use and whether KEDA's CRDs are installed.

    KEDA only when asked for and its ScaledObject resource is served; otherwise the
    built-in scaler, with a warning when KEDA was asked for.
    """
    try:
        installed = kube.served("ScaledObject")
    except ApiError as error:
        log.warning("could not check for KEDA's CRDs error=%s", error)
        installed = False
    if wanted == "keda" and not installed:
        log.warning(
            "scaling engine keda unavailable: keda.sh/v1alpha1 scaledobjects is not served "
            "(KEDA's CRDs are not installed); using builtin"
        )
        return "builtin", installed
    return wanted, installed


@dataclass
class Runtime:
    """The operator's moving parts, shared by the handlers."""

    kube: Kube
    workers: int = 32
    namespaces: tuple[str, ...] = ()
    # "builtin" or "keda" (resolved by ``scaling_engine``); with KEDA's CRDs installed,
    # their objects are loaded at start-up in either mode so stale ones get pruned.
    scaling_engine: str = "builtin"
    keda_installed: bool = False
    store: Store = field(default_factory=Store)
    reconciler: Reconciler = field(init=False)
    queue: WorkQueue[Key] = field(init=False)
    scaler: Scaler = field(init=False)
    events: EventSender = field(init=False)
    # With an elector, only the Lease holder reconciles; without, this process does.
    elector: LeaderElector | None = None
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    # kopf's stop flag: set when the Lease is lost, and once clean-up is done (kopf waits
    # up to 5 s for its waiter on a flag that is never set).
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    executor: ThreadPoolExecutor = field(init=False)
    # Every BackgroundJob is queued again this often, to heal drift a watch missed.
    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    # Server-side length of each watch (seconds, a random pick in this range).
    watch_seconds: tuple[int, int] = (240, 300)
    informers: list[Informer] = field(default_factory=list)
    # The distinct errors already logged with a traceback, per failing key.
    _logged_errors: dict[Key, set[str]] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    reconciles: int = 0  # reconciles finished, whatever their result
    # (BackgroundJobs cached at start, writes then, monotonic start) until the first
    # pass over them is logged.
    _first_pass: tuple[int, int, float] | None = None

    def __post_init__(self) -> None:
        self.queue = WorkQueue[Key]()
        self.scaler = Scaler(self.kube, self.queue.add)
        self.events = EventSender(self.kube)
        self.reconciler = Reconciler(
            self.kube,
            self.store,
            scaler=self.scaler,
            scaling_engine=self.scaling_engine,
            events=self.events.send,
        )
        self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="reconcile")
        self.kube.owner_guard = self.owner_guard
        if self.elector is not None:
            self.kube.fence = self.elector.fence
        metrics.watch_store(self.store)

    async def start(self) -> None:
        """Start the informers; the workers start once the cache is complete."""
        self._loop = asyncio.get_running_loop()
        self.events.start()
        self.tasks.append(asyncio.create_task(self._run()))

    async def _run(self) -> None:
        # BackgroundJobs first: when the children are listed, every owner that existed
        # is cached, so only children of newer owners wait aside for them.
        started = time.monotonic()
        # No cyclic garbage collection while the first lists fill the cache: each pass
        # would walk every object decoded so far (at 10,000 objects, most of the cold
        # start). The cache is acyclic (refcounting frees what it drops); once it is
        # complete it is frozen, so later collections skip it.
        collecting = gc.isenabled()
        gc.disable()
        try:
            await self._sync(self._informers_for((KIND,), None))
            # Then every child kind but Job, then Jobs: a scheduled run's Job is held for
            # its CronJob, so listing it first would set thousands aside, beyond their
            # bound (store.MAX_PENDING per namespace), at every start.
            kinds = self.child_kinds
            await self._sync(
                self._informers_for([k for k in kinds if k != "Job"], MANAGED_SELECTOR)
            )
            await self._sync(
                self._informers_for([k for k in kinds if k == "Job"], MANAGED_SELECTOR)
            )
        finally:
            # One collection for the garbage cycles of the lists (responses, errors),
            # then the cache is frozen out of every later one.
            swept = time.monotonic()
            unreachable = gc.collect()
            gc.freeze()
            if collecting:
                gc.enable()
            log.debug(
                "collected unreachable=%d seconds=%.2f", unreachable, time.monotonic() - swept
            )
        loop = asyncio.get_running_loop()
        if self.keda_installed and self.scaling_engine != "keda":
            await loop.run_in_executor(self.executor, self._load_stale_keda_children)
        bgjobs, children = self.store.sizes()
        log.info(
            "cache synced backgroundjobs=%d children=%d pending=%d seconds=%.2f",
            bgjobs,
            children,
            self.store.pending(),
            time.monotonic() - started,
        )
        if self.elector is None:
            metrics.LEADER.set(1)
            self.leading.set()
        else:
            self.tasks.append(asyncio.create_task(self.elector.run(self.leading, self.lost)))
            self.tasks.append(asyncio.create_task(self._stop_acting_when_lost()))
        self.tasks.append(asyncio.create_task(self.queue.run_delayed()))
        self.tasks.append(asyncio.create_task(self._when_leading(self.scaler.run())))
        self.tasks.append(asyncio.create_task(self._when_leading(self._resync())))
        for _ in range(self.workers):
            work = self.queue.run_worker(self._handle)
            self.tasks.append(asyncio.create_task(self._when_leading(work)))
        self.tasks.append(asyncio.create_task(self._when_leading(self._start_first_pass(bgjobs))))
        log.info("started workers=%d", self.workers)

    async def _start_first_pass(self, bgjobs: int) -> None:
        """Once leading: count the first pass over the ``bgjobs`` cached at start."""
        self._first_pass = (bgjobs, self.kube.writes, time.monotonic())
        self._first_pass_done(running=0)

    def _first_pass_done(self, running: int) -> None:
        """Log once every BackgroundJob cached at start has been reconciled once and no
        other reconcile is waiting or running: after a restart, the moment the operator
        acts on all of them again (and what it wrote). ``running``: reconciles the
        caller holds (its own)."""
        if self._first_pass is None:
            return
        bgjobs, writes, started = self._first_pass
        if self.reconciles < bgjobs or self.queue.unfinished > running:
            return
        self._first_pass = None
        log.info(
            "first pass done backgroundjobs=%d reconciles=%d writes=%d seconds=%.2f",
            bgjobs,
            self.reconciles,
            self.kube.writes - writes,
            time.monotonic() - started,
        )

    def _informers_for(self, kinds: Iterable[str], selector: str | None) -> list[Informer]:
        started = []
        for kind in kinds:
            for namespace in self.namespaces or (None,):
                sink: BackgroundJobSink | ChildSink
                if kind == KIND:
                    sink = BackgroundJobSink(self.store, self.enqueue, namespace)
                else:
                    sink = ChildSink(self.store, self.enqueue, kind, namespace)
                informer = Informer(
                    self.kube,
                    kind,
                    namespace,
                    sink,
                    label_selector=selector,
                    watch_seconds=self.watch_seconds,
                )
                informer.start()
                self.informers.append(informer)
                started.append(informer)
        return started

    @staticmethod
    async def _sync(informers: list[Informer]) -> None:
        for informer in informers:
            while not informer.synced.is_set():  # cancellable, unlike a thread's wait
                await asyncio.sleep(0.05)

    @property
    def synced(self) -> bool:
        """Whether every informer has listed once (the cache is complete)."""
        return bool(self.informers) and all(i.synced.is_set() for i in self.informers)

    def enqueue(self, keys: Iterable[Key]) -> None:
        """Queue BackgroundJobs; callable from the informers' threads."""
        batch = list(keys)
        loop = self._loop
        if loop is None or not batch:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            loop.call_soon_threadsafe(self._add_all, batch)

    def _add_all(self, keys: list[Key]) -> None:
        for key in keys:
            self.queue.add(key)

    async def _resync(self) -> None:
        """Queue every BackgroundJob every ``resync_seconds``; an unchanged one writes nothing."""
        while True:
            await asyncio.sleep(self.resync_seconds)
            keys = self.store.bgjob_keys()
            log.debug("resync backgroundjobs=%d", len(keys))
            self._add_all(keys)

    def owner_guard(self, manifest: dict[str, Any]) -> None:
        """Before applying or creating a child: its BackgroundJob still exists, same uid.

        Free when the child is cached (an update: the cache answers), or when the
        BackgroundJobs' watch is unbroken; otherwise (a relist under way) one GET of the
        BackgroundJob before creating the child.
        """
        controller = controller_of(manifest)
        if controller is None or controller[0] != KIND:
            return
        meta = manifest["metadata"]
        ref = next(r for r in meta.get("ownerReferences") or [] if r.get("uid") == controller[1])
        key = (meta["namespace"], ref["name"])
        creating = not self.store.holds_child(key, manifest["kind"], meta["name"])
        # The cache may be behind only in a gap between watches (a relist under way);
        # while the watch runs unbroken, it is as fresh as a GET would be, minus the
        # moment an event takes, and a child of a deleted owner is garbage collected.
        fresh = creating and not self._bgjobs_live(key[0])
        if not owner_exists(self.kube, self.store, key, controller[1], fresh=fresh):
            raise OwnerGone(
                f"{KIND} {key[0]}/{key[1]} uid {controller[1]} is gone: "
                f"{manifest['kind']} {meta['name']} not written"
            )

    def _bgjobs_live(self, namespace: str) -> bool:
        """Whether a BackgroundJob watch covering ``namespace`` is open with no gap."""
        return any(
            i.live and i.kind == KIND and i.namespace in (None, namespace) for i in self.informers
        )

    @property
    def child_kinds(self) -> tuple[str, ...]:
        """The child kinds watched: KEDA's too in KEDA mode (only then are they served)."""
        return CHILD_KINDS + (KEDA_KINDS if self.scaling_engine == "keda" else ())

    def _load_stale_keda_children(self) -> None:
        """Builtin mode on a cluster with KEDA: find ScaledObjects and TriggerAuthentications
        left by KEDA mode, so reconcile prunes them (they are not watched in this mode)."""
        for kind in KEDA_KINDS:
            try:
                items = self._list_children(kind)
            except ApiError as error:
                log.warning("not listed kind=%s error=%s", kind, error)
                continue
            self.store.load_children(items, kind, RESOURCES[kind][0])

    async def _stop_acting_when_lost(self) -> None:
        """Without the Lease, stop reconciling and scaling at once, before kopf stops."""
        await self.lost.wait()
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.stopped.set()

    async def _when_leading(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` once this process leads; a standby only keeps its cache warm."""
        try:
            await self.leading.wait()
        except asyncio.CancelledError:
            work.close()
            raise
        await work

    def _list_children(self, kind: str) -> list[dict[str, Any]]:
        if not self.namespaces:
            return self.kube.list(kind, MANAGED_SELECTOR)
        items: list[dict[str, Any]] = []
        for namespace in self.namespaces:
            items.extend(self.kube.list(kind, MANAGED_SELECTOR, namespace))
        return items

    async def stop(self) -> None:
        """Stop the workers; a reconcile in flight finishes its current request, then
        sends nothing more; the Lease is released last."""
        self.kube.closing = True
        for informer in self.informers:
            informer.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        self.scaler.close()
        # Reconciles in flight finish before the Lease goes to another replica.
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.executor.shutdown(wait=True, cancel_futures=True)
        )
        await asyncio.get_running_loop().run_in_executor(None, self.events.stop)
        if self.elector is not None and self.leading.is_set() and not self.lost.is_set():
            await asyncio.get_running_loop().run_in_executor(None, self.elector.release)
        self.stopped.set()

    async def _handle(self, key: Key) -> None:
        try:
            await self._reconcile(key)
        finally:
            self._first_pass_done(running=1)

    async def _reconcile(self, key: Key) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            wake = await loop.run_in_executor(self.executor, self.reconciler.reconcile, key)
            self.reconciles += 1
        except (TransientError, ApiError) as error:
            self.reconciles += 1
            at_least = error.retry_after if isinstance(error, ApiError) else None
            delay = self.queue.retry(key, at_least=at_least)
            metrics.observe_reconcile("retry", time.perf_counter() - started)
            log.warning(
                "reconcile deferred namespace=%s name=%s retry_in=%.1fs error=%s",
                *key,
                delay,
                error,
            )
            return
        except Exception as error:  # A bug must not stop the operator: log, back off, retry.
            self.reconciles += 1
            metrics.observe_reconcile("error", time.perf_counter() - started)
            await self._failed(key, error)
            return
        metrics.observe_reconcile("success", time.perf_counter() - started)
        self.queue.forget(key)
        self._logged_errors.pop(key, None)
        if wake is not None:
            self.queue.add_after(key, wake)

    async def _failed(self, key: Key, error: Exception) -> None:
        """An unexpected error: back off; after a few in a row, say so in the status.

        Its traceback is logged once per distinct error and key, not on every retry.
        """
        failures = self.queue.failures(key) + 1
        delay = self.queue.retry(key)
        signature = f"{type(error).__name__}: {error}"[:300]
        seen = self._logged_errors.setdefault(key, set())
        if signature not in seen and len(seen) < 8:
            seen.add(signature)
            log.exception(
                "reconcile failed namespace=%s name=%s failures=%d retry_in=%.1fs",
                *key,
                failures,
                delay,
            )
        else:
            log.warning(
                "reconcile failed again namespace=%s name=%s failures=%d retry_in=%.1fs error=%s",
                *key,
                failures,
                delay,
                signature,
            )
        if failures != FAILURES_BEFORE_DEGRADED:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.executor, self._degrade, key, error, failures)
        except ApiError as write_error:
            log.warning(
                "degraded status not written namespace=%s name=%s error=%s", *key, write_error
            )

    def _degrade(self, key: Key, error: Exception, failures: int) -> None:
        """Degraded (ReconcileError) with a short message, and a Warning Event."""
        body = self.store.bgjob(key)
        if body is None:
            return
        meta = body["metadata"]
        message = error_message(error, failures)
        now = rfc3339(datetime.now(UTC))
        status = degraded_status(
            body.get("status") or {}, int(meta.get("generation") or 0), message, now
        )
        written = self.kube.apply_status(key[0], key[1], status)
        self.store.refresh_bgjob(written, meta.get("resourceVersion"))
        self.events.send(body, "Warning", "ReconcileError", message)
        metrics.RECONCILE_DEGRADED.inc()
        log.error("degraded namespace=%s name=%s reason=ReconcileError %s", *key, message)


def configure(settings: kopf.OperatorSettings) -> None:
    """Every kopf setting the operator relies on, in one place (kopf watches nothing)."""
    settings.networking.request_timeout = 60
    # Our own Events say what happened; kopf's log lines are not Events.
    settings.posting.enabled = False
    # No cluster-wide CRD scan (needs extra RBAC); the resources are known.
    settings.scanning.disabled = True


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    """The kopf registry: start-up, login, clean-up and the health probe; no watch."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings)
        await runtime.start()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same credentials as our own client: in-cluster token or kubeconfig.
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        log.info("stopping")
        try:
            await runtime.stop()
        except Exception:  # A failing clean-up must never keep the process alive.
            log.exception("clean-up failed")

    @kopf.on.probe(id="cache", registry=registry)
    def cache_probe(**_: Any) -> dict[str, int]:
        bgjobs, children = runtime.store.sizes()
        return {
            "backgroundjobs": bgjobs,
            "children": children,
            "pending": runtime.store.pending(),
            "synced": int(runtime.synced),
            "lists": sum(i.lists for i in runtime.informers),
        }

    return registry
