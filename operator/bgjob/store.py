"""An in-memory cache of BackgroundJobs and their children, fed by watch events.

Reconciles read from here instead of the API server, so a resync that changes
nothing makes no API call. Bodies are trimmed to what the operator reads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from bgjob.api.names import LABEL_INSTANCE

Key = tuple[str, str]  # (namespace, name)
ChildKey = tuple[str, str]  # (kind, name)
Body = dict[str, Any]

_KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
    "ownerReferences",
)


def trim(body: Body, kind: str | None = None, api_version: str | None = None) -> Body:
    """Keep what reconcile and status read; drop managedFields and the like.

    Items of a LIST response carry no kind, so the caller may name it.
    """
    meta = body.get("metadata") or {}
    return {
        "apiVersion": api_version or body.get("apiVersion"),
        "kind": kind or body.get("kind"),
        "metadata": {k: meta[k] for k in _KEPT_METADATA if k in meta},
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }


def key_of(body: Body) -> Key:
    """The (namespace, name) of an object."""
    meta = body["metadata"]
    return meta.get("namespace") or "default", meta["name"]


def owner_key_of(child: Body) -> Key | None:
    """The BackgroundJob a child belongs to, from its instance label."""
    meta = child.get("metadata") or {}
    instance = (meta.get("labels") or {}).get(LABEL_INSTANCE)
    if not instance:
        return None
    return meta.get("namespace") or "default", instance


class Store:
    """Thread-safe maps: BackgroundJobs by key, children by their owner's key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bgjobs: dict[Key, Body] = {}
        self._children: dict[Key, dict[ChildKey, Body]] = {}

    def put_bgjob(self, body: Body) -> Key:
        """Remember the latest version of a BackgroundJob."""
        key = key_of(body)
        with self._lock:
            self._bgjobs[key] = trim(body)
        return key

    def refresh_bgjob(self, body: Body, seen_version: str | None) -> None:
        """Store our own write's result, unless a newer event arrived since ``seen_version``."""
        key = key_of(body)
        with self._lock:
            cached = self._bgjobs.get(key)
            if cached is not None and cached["metadata"].get("resourceVersion") == seen_version:
                self._bgjobs[key] = trim(body)

    def drop_bgjob(self, key: Key) -> None:
        """Forget a deleted BackgroundJob."""
        with self._lock:
            self._bgjobs.pop(key, None)

    def bgjob(self, key: Key) -> Body | None:
        """The cached BackgroundJob, or None."""
        with self._lock:
            return self._bgjobs.get(key)

    def put_child(self, body: Body, kind: str, api_version: str) -> Key | None:
        """Remember a child; returns its owner's key."""
        owner = owner_key_of(body)
        if owner is None:
            return None
        child = trim(body, kind, api_version)
        with self._lock:
            self._children.setdefault(owner, {})[(child["kind"], child["metadata"]["name"])] = child
        return owner

    def refresh_child(
        self, body: Body, kind: str, api_version: str, seen_version: str | None
    ) -> None:
        """Store our own write's result, unless a watch event replaced what we read
        (``seen_version``; None: not cached) meanwhile: that event is newer than our
        response, and overwriting it would hide the controller's latest status."""
        owner = owner_key_of(body)
        if owner is None:
            return
        key = (kind, body["metadata"]["name"])
        with self._lock:
            cached = self._children.get(owner, {}).get(key)
            cached_version = cached["metadata"].get("resourceVersion") if cached else None
            if cached_version == seen_version:
                self._children.setdefault(owner, {})[key] = trim(body, kind, api_version)

    def drop_child(self, body: Body, kind: str) -> Key | None:
        """Forget a deleted child; returns its owner's key."""
        owner = owner_key_of(body)
        if owner is None:
            return None
        with self._lock:
            mine = self._children.get(owner)
            if mine is not None:
                mine.pop((kind, body["metadata"]["name"]), None)
                if not mine:
                    del self._children[owner]
        return owner

    def load_children(self, bodies: Iterable[Body], kind: str, api_version: str) -> None:
        """Load a full listing of one kind of children (at start-up)."""
        for body in bodies:
            self.put_child(body, kind, api_version)

    def children(self, key: Key) -> dict[ChildKey, Body]:
        """A snapshot of the children cached for one BackgroundJob."""
        with self._lock:
            return dict(self._children.get(key, {}))

    def sizes(self) -> tuple[int, int]:
        """How many BackgroundJobs and children are cached."""
        with self._lock:
            return len(self._bgjobs), sum(len(c) for c in self._children.values())

    def statuses(self) -> list[tuple[Key, dict[str, Any]]]:
        """The status of every cached BackgroundJob (for metrics)."""
        with self._lock:
            return [(key, body.get("status") or {}) for key, body in self._bgjobs.items()]
