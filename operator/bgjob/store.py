"""An in-memory cache of BackgroundJobs and the children they own, fed by the informers.

Reconciles read from here instead of the API server, so a resync that changes
nothing makes no API call. Bodies are trimmed to what the operator reads.

Only children a cached BackgroundJob controls are held: an ownerReference with
``controller: true`` and that BackgroundJob's uid (or, for a run, a CronJob held
for it). A labelled object nobody of ours owns costs nothing. A child whose owner
is not cached (yet) is held aside by its controller's uid and adopted when the
owner arrives: the watches of different kinds are not ordered, so a standby can
see a child before its BackgroundJob. That is bounded per namespace (the oldest
goes first) and in time, so one namespace's orphans (any uid qualifies, and a
finalizer keeps them) neither grow the cache nor push out another namespace's;
a reconcile reads a child it misses from the API server anyway.

After a relist, ``replace_*`` makes one kind in one scope exactly what the list
returned and returns the BackgroundJobs whose view changed.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from bgjob.api.models import KIND
from bgjob.api.names import Body

Key = tuple[str, str]  # (namespace, name)
ChildKey = tuple[str, str]  # (kind, name)
ChildId = tuple[str, str, str]  # (kind, namespace, name)

# Children held aside while their owner is not cached: at most this many per
# namespace (the oldest goes first), each for at most PENDING_SECONDS. The watches of
# different kinds are not ordered, so an owner normally arrives within moments.
MAX_PENDING = 100
PENDING_SECONDS = 60.0

# A string longer than this in a child's spec or metadata is held as its digest: a
# tenant's 1 MB env value costs 80 bytes, and drift is still seen (see Digest).
DIGEST_ABOVE = 256
# Status strings shown to users (a condition's message) are cut at this length.
MAX_MESSAGE = 4096
MAX_CONDITIONS = 16
# Strings up to this long are interned in the cache (see _shared).
INTERN_UP_TO = 64

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
_KEPT_OWNER_FIELDS = ("apiVersion", "kind", "name", "uid", "controller")
# Label and annotation domains the operator reads or sets; others are not held.
_OUR_LABEL_PREFIXES = ("app.kubernetes.io/", "bgjob.dev/")
_OUR_ANNOTATION_PREFIXES = ("bgjob.dev/", "autoscaling.keda.sh/")
_CONDITION_FIELDS = ("type", "status", "reason", "message", "lastTransitionTime")

# What each child kind's status is read for (bgjob.status, bgjob.runs, bgjob.plan).
# Kept here, next to the trimming, so those modules stay pure; a field they start
# reading must be added here (tests/unit/test_store.py holds every one of them).
READ_STATUS: dict[str, tuple[str, ...]] = {
    "Deployment": (
        "observedGeneration",
        "replicas",
        "readyReplicas",
        "updatedReplicas",
        "conditions",
    ),
    "StatefulSet": (
        "observedGeneration",
        "replicas",
        "readyReplicas",
        "updatedReplicas",
        "currentRevision",
        "updateRevision",
        "conditions",
    ),
    "CronJob": ("lastScheduleTime", "lastSuccessfulTime"),
    "Job": ("startTime", "completionTime", "conditions", "active", "ready"),
}
# Kinds whose spec nothing reads (a run's Job is created once, never compared).
UNREAD_SPEC = frozenset({"Job"})


class Digest(str):
    """A long string held as its SHA-256: equal to any string with that digest.

    ``reconcile.covers`` compares observed values to desired ones with ``==``; the
    observed side is the left operand, so a Digest compares by content and a value
    the operator set (however long) still matches, while an edit does not.
    """

    __slots__ = ()

    @classmethod
    def of(cls, value: str) -> Digest:
        return cls("sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Digest):
            return str.__eq__(self, other)
        if isinstance(other, str):
            return str.__eq__(self, Digest.of(other))
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        same = self.__eq__(other)
        return same if same is NotImplemented else not same

    __hash__ = str.__hash__


def _intern(value: Any) -> Any:
    return sys.intern(value) if type(value) is str else value


def _shared(value: str) -> str:
    """Short strings once for the whole cache: the same condition types, reasons,
    images and timestamps recur across thousands of objects (each copy costs 50+ bytes).
    Interned strings are freed when nothing holds them any more."""
    return sys.intern(value) if len(value) <= INTERN_UP_TO and type(value) is str else value


def compact(value: Any) -> Any:
    """A copy of a JSON value with every long string replaced by its Digest, and the
    short ones shared."""
    if isinstance(value, str):
        if len(value) > DIGEST_ABOVE and not isinstance(value, Digest):
            return Digest.of(value)
        return _shared(value)
    if isinstance(value, dict):
        return {_intern(k): compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


def shared(value: Any) -> Any:
    """A copy of a JSON value with its keys and short strings shared (see ``_shared``)."""
    if isinstance(value, str):
        return _shared(value)
    if isinstance(value, dict):
        return {_intern(k): shared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shared(v) for v in value]
    return value


def _ours(mapping: Any, prefixes: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        return {}
    return {
        _intern(k): compact(v)
        for k, v in mapping.items()
        if isinstance(k, str) and k.startswith(prefixes)
    }


def _short(value: Any) -> Any:
    return value[:MAX_MESSAGE] if isinstance(value, str) else value


def _child_status(kind: str, status: Any) -> dict[str, Any]:
    if not isinstance(status, dict):
        return {}
    kept: dict[str, Any] = {}
    for name in READ_STATUS.get(kind, ()):
        if name not in status:
            continue
        value = status[name]
        if name == "conditions":
            value = [
                {k: shared(_short(c[k])) for k in _CONDITION_FIELDS if k in c}
                for c in (value if isinstance(value, list) else [])[:MAX_CONDITIONS]
                if isinstance(c, dict)
            ]
        kept[name] = shared(_short(value))
    return kept


def _metadata(meta: Any) -> dict[str, Any]:
    meta = meta if isinstance(meta, dict) else {}
    kept = {k: meta[k] for k in _KEPT_METADATA if k in meta}
    for name in ("namespace", "creationTimestamp", "deletionTimestamp"):
        if name in kept:
            kept[name] = _intern(kept[name])
    if "ownerReferences" in kept:
        kept["ownerReferences"] = [
            {k: _intern(ref[k]) for k in _KEPT_OWNER_FIELDS if k in ref}
            for ref in kept["ownerReferences"] or []
            if isinstance(ref, dict)
        ]
    return kept


def trim(body: Body, kind: str | None = None, api_version: str | None = None) -> Body:
    """Keep what reconcile and status read; drop managedFields and the like.

    Items of a LIST response carry no kind, so the caller may name it. Strings that
    repeat across thousands of objects (kind, apiVersion, namespace) are interned.
    A BackgroundJob keeps its spec (the CRD bounds it) and status (ours), its
    labels in our domains and only bgjob.dev/ annotations (run-now). A child
    keeps its labels and annotations in our domains, its spec with long strings as
    digests (drift is still seen), and only the status fields in READ_STATUS.
    Trimming a trimmed body changes nothing.
    """
    kind = _intern(kind or body.get("kind"))
    meta = _metadata(body.get("metadata"))
    if kind == KIND:
        if "labels" in meta:
            meta["labels"] = _ours(meta["labels"], _OUR_LABEL_PREFIXES)
        if "annotations" in meta:
            meta["annotations"] = _ours(meta["annotations"], ("bgjob.dev/",))
        return {
            "apiVersion": _intern(api_version or body.get("apiVersion")),
            "kind": kind,
            "metadata": meta,
            "spec": shared(body.get("spec") or {}),
            "status": shared(body.get("status") or {}),
        }
    if "labels" in meta:
        meta["labels"] = _ours(meta["labels"], _OUR_LABEL_PREFIXES)
    if "annotations" in meta:
        meta["annotations"] = _ours(meta["annotations"], _OUR_ANNOTATION_PREFIXES)
    spec = body.get("spec") or {}
    return {
        "apiVersion": _intern(api_version or body.get("apiVersion")),
        "kind": kind,
        "metadata": meta,
        "spec": {} if kind in UNREAD_SPEC else compact(spec),
        "status": _child_status(str(kind), body.get("status")),
    }


def key_of(body: Body) -> Key:
    """The (namespace, name) of an object."""
    meta = body["metadata"]
    return meta.get("namespace") or "default", meta["name"]


def controller_of(body: Body) -> tuple[str, str] | None:
    """The (kind, uid) of an object's controller ownerReference, or None."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") and ref.get("uid"):
            return str(ref.get("kind") or ""), str(ref["uid"])
    return None


def _same_version(cached: Body, body: Body) -> bool:
    """Whether ``body`` is the very object cached: same uid, same resourceVersion."""
    meta, held = body.get("metadata") or {}, cached["metadata"]
    version = meta.get("resourceVersion")
    return (
        version is not None
        and str(version) == _version(cached)
        and (meta.get("uid") or "") == (held.get("uid") or "")
    )


def _version(body: Body | None) -> str | None:
    if body is None:
        return None
    version = body["metadata"].get("resourceVersion")
    return str(version) if version is not None else None


def _in_scope(namespace: str, scope: str | None) -> bool:
    return scope is None or namespace == scope


class Store:
    """Thread-safe maps: BackgroundJobs by key, children by their owner's key."""

    def __init__(
        self,
        max_pending: int = MAX_PENDING,
        pending_seconds: float = PENDING_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._bgjobs: dict[Key, Body] = {}
        self._bgjob_uids: dict[str, Key] = {}
        self._children: dict[Key, dict[ChildKey, Body]] = {}
        self._held: dict[ChildId, Key] = {}  # child -> its owner's key
        self._child_uids: dict[str, Key] = {}  # uid of a held child -> its owner's key
        # Children whose controller is not cached, by the controller's uid.
        self._pending: dict[str, dict[ChildId, Body]] = {}
        self._pending_uid: dict[ChildId, str] = {}
        # Per namespace, the children held aside, oldest first, with their deadline.
        self._pending_order: dict[str, OrderedDict[ChildId, float]] = {}
        self.max_pending = max_pending  # per namespace
        self.pending_seconds = pending_seconds
        self.clock = clock
        self.dropped = 0  # children dropped: bound reached, or held aside too long

    # --- BackgroundJobs -----------------------------------------------------------------

    def put_bgjob(self, body: Body) -> Key:
        """Remember the latest version of a BackgroundJob; adopt children waiting for it."""
        with self._lock:
            return self._put_bgjob(trim(body))

    def update_bgjob(self, body: Body) -> Key | None:
        """A watch event's BackgroundJob: stored, and its key; None when the cache holds
        that very version already (the echo of our own write, stored when it was
        answered): nothing new to reconcile."""
        with self._lock:
            cached = self._bgjobs.get(key_of(body))
            if cached is not None and _same_version(cached, body):
                return None
            return self._put_bgjob(trim(body))

    def _put_bgjob(self, trimmed: Body) -> Key:
        key = key_of(trimmed)
        uid = str(trimmed["metadata"].get("uid") or "")
        old = self._bgjobs.get(key)
        old_uid = str(old["metadata"].get("uid") or "") if old is not None else ""
        if old is not None and old_uid != uid:
            self._drop_bgjob(key)  # a new object under an old name: a new owner
        self._bgjobs[key] = trimmed
        if uid:
            self._bgjob_uids[uid] = key
            self._adopt(uid, key)
        return key

    def refresh_bgjob(self, body: Body, seen_version: str | None) -> None:
        """Store our own write's result, unless a newer event arrived since ``seen_version``."""
        key = key_of(body)
        with self._lock:
            cached = self._bgjobs.get(key)
            if cached is None or _version(cached) != seen_version:
                return
            fresh = trim(body)
            uid = cached["metadata"].get("uid")
            if fresh["metadata"].setdefault("uid", uid) != uid:
                return  # another object of that name: the informer will tell
            self._put_bgjob(fresh)

    def drop_bgjob(self, key: Key) -> None:
        """Forget a deleted BackgroundJob; its children wait aside for garbage collection."""
        with self._lock:
            self._drop_bgjob(key)

    def _drop_bgjob(self, key: Key) -> None:
        body = self._bgjobs.pop(key, None)
        if body is None:
            return
        uid = str(body["metadata"].get("uid") or "")
        if self._bgjob_uids.get(uid) == key:
            del self._bgjob_uids[uid]
        for (kind, name), child in list(self._children.get(key, {}).items()):
            self._unhold((kind, key[0], name))
            self._pend((kind, key[0], name), child)

    def bgjob(self, key: Key) -> Body | None:
        """The cached BackgroundJob, or None."""
        with self._lock:
            return self._bgjobs.get(key)

    def bgjob_uid(self, key: Key) -> str | None:
        """The uid of the cached BackgroundJob, or None when it is not cached."""
        with self._lock:
            body = self._bgjobs.get(key)
            return str(body["metadata"].get("uid") or "") if body is not None else None

    def bgjob_keys(self) -> list[Key]:
        """Every cached BackgroundJob's key (for a resync)."""
        with self._lock:
            return list(self._bgjobs)

    def replace_bgjobs(
        self, bodies: Iterable[Body], namespace: str | None, *, trimmed: bool = False
    ) -> set[Key]:
        """Make the BackgroundJobs in ``namespace`` (None: all) exactly ``bodies``
        (already ``trim``-med when ``trimmed``).

        Returns the keys that appeared, changed or vanished.
        """
        listed = {key_of(b): b if trimmed else trim(b, KIND) for b in bodies}
        changed: set[Key] = set()
        with self._lock:
            for key in [k for k in self._bgjobs if _in_scope(k[0], namespace)]:
                if key not in listed:
                    self._drop_bgjob(key)
                    changed.add(key)
            for key, body in listed.items():
                if _version(self._bgjobs.get(key)) != _version(body) or key not in self._bgjobs:
                    self._put_bgjob(body)
                    changed.add(key)
        return changed

    # --- children -----------------------------------------------------------------------

    def put_child(self, body: Body, kind: str, api_version: str) -> Key | None:
        """Remember a child; returns its owner's key when a cached BackgroundJob owns it."""
        with self._lock:
            return self._put_child(trim(body, kind, api_version))

    def update_child(self, body: Body, kind: str, api_version: str) -> tuple[bool, Key | None]:
        """A watch event's child: whether it was new to the cache (False: that very
        version is cached already, the echo of our own write), and its owner's key when
        a cached BackgroundJob owns it."""
        meta = body["metadata"]
        cid: ChildId = (kind, meta.get("namespace") or "default", meta["name"])
        with self._lock:
            cached = self._find(cid)
            if cached is not None and _same_version(cached, body):
                return False, None
            return True, self._put_child(trim(body, kind, api_version))

    def _owner(self, child: Body) -> Key | None:
        """The cached BackgroundJob that controls ``child`` (directly or through a CronJob)."""
        controller = controller_of(child)
        if controller is None:
            return None
        kind, uid = controller
        namespace = child["metadata"].get("namespace") or "default"
        if kind == KIND:
            owner = self._bgjob_uids.get(uid)
        elif kind == "CronJob" and child["kind"] == "Job":
            owner = self._child_uids.get(uid)
        else:
            return None
        return owner if owner is not None and owner[0] == namespace else None

    def _put_child(self, child: Body) -> Key | None:
        meta = child["metadata"]
        cid: ChildId = (child["kind"], meta.get("namespace") or "default", meta["name"])
        self._unhold(cid)
        self._unpend(cid)
        owner = self._owner(child)
        if owner is None:
            self._pend(cid, child)
            return None
        self._children.setdefault(owner, {})[(cid[0], cid[2])] = child
        self._held[cid] = owner
        uid = str(meta.get("uid") or "")
        if uid:
            self._child_uids[uid] = owner
            self._adopt(uid, owner)
        return owner

    def _unhold(self, cid: ChildId) -> Key | None:
        owner = self._held.pop(cid, None)
        if owner is None:
            return None
        mine = self._children.get(owner)
        if mine is not None:
            child = mine.pop((cid[0], cid[2]), None)
            if child is not None:
                uid = str(child["metadata"].get("uid") or "")
                if self._child_uids.get(uid) == owner:
                    del self._child_uids[uid]
            if not mine:
                del self._children[owner]
        return owner

    def _pend(self, cid: ChildId, child: Body) -> None:
        controller = controller_of(child)
        if controller is None or controller[0] not in (KIND, "CronJob"):
            return  # Not ours in any way: never held.
        now = self.clock()
        self._expire(cid[1], now)
        order = self._pending_order.setdefault(cid[1], OrderedDict())
        while order and len(order) >= self.max_pending:
            self._unpend(next(iter(order)))  # the oldest goes first
            self.dropped += 1
        if self.max_pending <= 0:
            self.dropped += 1
            return
        self._pending.setdefault(controller[1], {})[cid] = child
        self._pending_uid[cid] = controller[1]
        self._pending_order.setdefault(cid[1], OrderedDict())[cid] = now + self.pending_seconds

    def _expire(self, namespace: str, now: float) -> None:
        """Drop the children held aside in ``namespace`` past their deadline."""
        order = self._pending_order.get(namespace)
        while order:
            cid, deadline = next(iter(order.items()))
            if deadline > now:
                break
            self._unpend(cid)
            self.dropped += 1

    def _unpend(self, cid: ChildId) -> None:
        uid = self._pending_uid.pop(cid, None)
        if uid is None:
            return
        order = self._pending_order.get(cid[1])
        if order is not None:
            order.pop(cid, None)
            if not order:
                del self._pending_order[cid[1]]
        waiting = self._pending.get(uid)
        if waiting is not None:
            waiting.pop(cid, None)
            if not waiting:
                del self._pending[uid]

    def _adopt(self, uid: str, owner: Key) -> None:
        """Hold the children that waited for the controller with this uid."""
        for cid, child in list(self._pending.get(uid, {}).items()):
            self._unpend(cid)
            self._put_child(child)

    def refresh_child(
        self, body: Body, kind: str, api_version: str, seen_version: str | None
    ) -> None:
        """Store our own write's result, unless a watch event replaced what we read
        (``seen_version``; None: not cached) meanwhile: that event is newer than our
        response, and overwriting it would hide the controller's latest status."""
        meta = body["metadata"]
        cid: ChildId = (kind, meta.get("namespace") or "default", meta["name"])
        with self._lock:
            if _version(self._find(cid)) == seen_version:
                self._put_child(trim(body, kind, api_version))

    def _find(self, cid: ChildId) -> Body | None:
        owner = self._held.get(cid)
        if owner is not None:
            return self._children.get(owner, {}).get((cid[0], cid[2]))
        uid = self._pending_uid.get(cid)
        return self._pending.get(uid, {}).get(cid) if uid is not None else None

    def drop_child(self, body: Body, kind: str) -> Key | None:
        """Forget a deleted child; returns its owner's key when one was cached."""
        meta = body["metadata"]
        cid: ChildId = (kind, meta.get("namespace") or "default", meta["name"])
        with self._lock:
            self._unpend(cid)
            return self._unhold(cid)

    def replace_children(
        self,
        bodies: Iterable[Body],
        kind: str,
        api_version: str,
        namespace: str | None,
        *,
        trimmed: bool = False,
    ) -> set[Key]:
        """Make the ``kind`` children in ``namespace`` (None: all) exactly ``bodies``
        (already ``trim``-med when ``trimmed``).

        Returns the owners whose children appeared, changed or vanished.
        """
        listed: dict[ChildId, Body] = {}
        for body in bodies:
            child = body if trimmed else trim(body, kind, api_version)
            meta = child["metadata"]
            listed[(kind, meta.get("namespace") or "default", meta["name"])] = child
        changed: set[Key] = set()
        with self._lock:
            known = [*self._held, *self._pending_uid]
            for cid in known:
                if cid[0] == kind and _in_scope(cid[1], namespace) and cid not in listed:
                    self._unpend(cid)
                    owner = self._unhold(cid)
                    if owner is not None:
                        changed.add(owner)
            for cid, child in listed.items():
                before = self._find(cid)
                if before is not None and _version(before) == _version(child):
                    continue
                owner_before = self._held.get(cid)
                owner = self._put_child(child)
                changed |= {k for k in (owner_before, owner) if k is not None}
        return changed

    def load_children(self, bodies: Iterable[Body], kind: str, api_version: str) -> None:
        """Add a listing of one kind of children (not watched: KEDA's in builtin mode)."""
        for body in bodies:
            self.put_child(body, kind, api_version)

    def children(self, key: Key) -> dict[ChildKey, Body]:
        """A snapshot of the children cached for one BackgroundJob."""
        with self._lock:
            return dict(self._children.get(key, {}))

    def holds_child(self, key: Key, kind: str, name: str) -> bool:
        """Whether the child ``kind``/``name`` of this BackgroundJob is cached."""
        with self._lock:
            return (kind, name) in self._children.get(key, {})

    def sizes(self) -> tuple[int, int]:
        """How many BackgroundJobs and children are cached."""
        with self._lock:
            return len(self._bgjobs), len(self._held)

    def pending(self) -> int:
        """How many children wait aside for an owner that is not cached."""
        with self._lock:
            now = self.clock()
            for namespace in list(self._pending_order):
                self._expire(namespace, now)
            return len(self._pending_uid)

    def statuses(self) -> list[tuple[Key, dict[str, Any]]]:
        """The status of every cached BackgroundJob (for metrics)."""
        with self._lock:
            return [(key, body.get("status") or {}) for key, body in self._bgjobs.items()]
