"""kopf wiring: watch events feed the cache and the work queue; workers reconcile.

kopf gives us robust watch streams, login and the health endpoint. Everything
else is ours and level-triggered: every event of a BackgroundJob or one of its
children queues that BackgroundJob, and a pool of workers reconciles queued keys
(never one key twice at once). No kopf state is written to objects: only
``on.event`` handlers, so no finalizers and no progress annotations.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import kopf

from bgjob import metrics
from bgjob.api.models import GROUP, PLURAL, VERSION
from bgjob.api.names import LABEL_MANAGED_BY, MANAGER
from bgjob.kube import CHILD_KINDS, KEDA_KINDS, RESOURCES, ApiError, Kube
from bgjob.leader import LeaderElector
from bgjob.reconcile import Reconciler, TransientError
from bgjob.scaling.scaler import Scaler
from bgjob.store import Key, Store, key_of
from bgjob.workqueue import WorkQueue

log = logging.getLogger("bgjob.operator")

MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGER}"


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
    workers: int = 4
    namespaces: tuple[str, ...] = ()
    # "builtin" or "keda" (resolved by ``scaling_engine``); with KEDA's CRDs installed,
    # their objects are loaded at start-up in either mode so stale ones get pruned.
    scaling_engine: str = "builtin"
    keda_installed: bool = False
    store: Store = field(default_factory=Store)
    reconciler: Reconciler = field(init=False)
    queue: WorkQueue[Key] = field(init=False)
    scaler: Scaler = field(init=False)
    # With an elector, only the Lease holder reconciles; without, this process does.
    elector: LeaderElector | None = None
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    executor: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.queue = WorkQueue[Key]()
        self.scaler = Scaler(self.kube, self.queue.add)
        self.reconciler = Reconciler(
            self.kube, self.store, scaler=self.scaler, scaling_engine=self.scaling_engine
        )
        self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="reconcile")
        metrics.watch_store(self.store)

    async def start(self) -> None:
        """Load the children into the cache, then start the workers."""
        loop = asyncio.get_running_loop()
        for kind in self.child_kinds:
            api_version = RESOURCES[kind][0]
            items = await loop.run_in_executor(self.executor, self._list_children, kind)
            self.store.load_children(items, kind, api_version)
        if self.keda_installed and self.scaling_engine != "keda":
            await loop.run_in_executor(self.executor, self._load_stale_keda_children)
        if self.elector is None:
            metrics.LEADER.set(1)
            self.leading.set()
        else:
            self.tasks.append(asyncio.create_task(self.elector.run(self.leading, self.lost)))
            self.tasks.append(asyncio.create_task(self._stop_acting_when_lost()))
        self.tasks.append(asyncio.create_task(self.queue.run_delayed()))
        self.tasks.append(asyncio.create_task(self._when_leading(self.scaler.run())))
        for _ in range(self.workers):
            work = self.queue.run_worker(self._handle)
            self.tasks.append(asyncio.create_task(self._when_leading(work)))
        log.info("started workers=%d children=%d", self.workers, self.store.sizes()[1])

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
        """Stop the workers; a reconcile in flight finishes its current request."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        self.scaler.close()
        # Reconciles in flight finish before the Lease goes to another replica.
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.executor.shutdown(wait=True, cancel_futures=True)
        )
        if self.elector is not None and self.leading.is_set() and not self.lost.is_set():
            await asyncio.get_running_loop().run_in_executor(None, self.elector.release)

    async def _handle(self, key: Key) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            wake = await loop.run_in_executor(self.executor, self.reconciler.reconcile, key)
        except (TransientError, ApiError) as error:
            delay = self.queue.retry(key)
            metrics.observe_reconcile("retry", time.perf_counter() - started)
            log.warning(
                "reconcile deferred namespace=%s name=%s retry_in=%.1fs error=%s",
                *key,
                delay,
                error,
            )
            return
        except Exception:  # A bug must not stop the operator: log, back off, retry.
            delay = self.queue.retry(key)
            metrics.observe_reconcile("error", time.perf_counter() - started)
            log.exception("reconcile failed namespace=%s name=%s retry_in=%.1fs", *key, delay)
            return
        metrics.observe_reconcile("success", time.perf_counter() - started)
        self.queue.forget(key)
        if wake is not None:
            self.queue.add_after(key, wake)


def configure(settings: kopf.OperatorSettings, child_kinds: tuple[str, ...]) -> None:
    """Every kopf setting the operator relies on, in one place."""
    # Silent watch stalls are kopf's best-known production failure: bound every stream.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.watching.reconnect_backoff = 1.0
    settings.networking.request_timeout = 60
    # Only our children, filtered by the API server rather than in Python.
    for kind in child_kinds:
        api_version, plural = RESOURCES[kind]
        group = api_version.split("/")[0]
        settings.watching.label_selectors[group, plural] = MANAGED_SELECTOR
    # Our own Events say what happened; kopf's log lines are not Events.
    settings.posting.enabled = False
    # No cluster-wide CRD scan (needs extra RBAC); the resources are known.
    settings.scanning.disabled = True


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    """The kopf registry: start-up, clean-up, and one event handler per watched kind."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, runtime.child_kinds)
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
        return {"backgroundjobs": bgjobs, "children": children}

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def backgroundjob_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        raw = dict(body)
        key = key_of(raw)
        if type == "DELETED":
            runtime.store.drop_bgjob(key)  # reconcile then finds nothing and untracks it
        else:
            runtime.store.put_bgjob(raw)
        runtime.queue.add(key)

    for kind in runtime.child_kinds:
        _register_child(registry, runtime, kind)
    return registry


def _register_child(registry: kopf.OperatorRegistry, runtime: Runtime, kind: str) -> None:
    api_version, plural = RESOURCES[kind]
    group, version = api_version.split("/")

    async def child_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        raw = dict(body)
        if type == "DELETED":
            owner = runtime.store.drop_child(raw, kind)
        else:
            owner = runtime.store.put_child(raw, kind, api_version)
        if owner is not None and runtime.store.bgjob(owner) is not None:
            runtime.queue.add(owner)

    kopf.on.event(
        group,
        version,
        plural,
        id=f"{kind.lower()}_event",
        labels={LABEL_MANAGED_BY: MANAGER},
        registry=registry,
    )(child_event)
