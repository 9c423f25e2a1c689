"""A thin, typed door to the Kubernetes API: apply, create, delete, status, events.

The official client's generated methods are per kind; the operator handles four
kinds the same way, so it speaks REST through the client's ``ApiClient`` (which
keeps authentication, TLS and token refresh) with one small resource table.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import orjson
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from bgjob import metrics
from bgjob.api.models import API_VERSION, KIND, PLURAL
from bgjob.api.names import MANAGER
from bgjob.api.times import rfc3339

# kind -> (apiVersion, plural)
RESOURCES: dict[str, tuple[str, str]] = {
    "Deployment": ("apps/v1", "deployments"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "CronJob": ("batch/v1", "cronjobs"),
    "Job": ("batch/v1", "jobs"),
    KIND: (API_VERSION, PLURAL),
    "Secret": ("v1", "secrets"),
    # Listed (never watched) once per failed run, to tell why it failed.
    "Pod": ("v1", "pods"),
    # Metadata listed before a work-aware Deployment scales in: which pods are its own.
    "ReplicaSet": ("apps/v1", "replicasets"),
    "Event": ("v1", "events"),
    "Lease": ("coordination.k8s.io/v1", "leases"),
    "ScaledObject": ("keda.sh/v1alpha1", "scaledobjects"),
    "TriggerAuthentication": ("keda.sh/v1alpha1", "triggerauthentications"),
}
CHILD_KINDS = ("Deployment", "StatefulSet", "CronJob", "Job")
# Children in KEDA mode; their resources exist only where KEDA's CRDs are installed.
KEDA_KINDS = ("ScaledObject", "TriggerAuthentication")
# Connect, read seconds: never hang a worker thread, and stay well below the Lease's
# 15 s, so a write sent before the renew deadline is answered (or abandoned) before a
# new leader can start.
REQUEST_TIMEOUT = (5.0, 10.0)
# A watch is held open this long by the server (plus the client's margin) at most.
WATCH_MARGIN = 30.0
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A resourceVersion no object ever has (the largest int64): an apply carrying it
# creates, or conflicts with whatever exists.
NO_VERSION = "9223372036854775807"


class ApiError(Exception):
    """A failed API call, with the HTTP status and the server's message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    # Seconds the server asked us to wait (a 429's Retry-After), if it said.
    retry_after: float | None = None

    @property
    def permanent(self) -> bool:
        """True when sending the same request again cannot succeed (invalid, forbidden)."""
        return self.status in (400, 403, 422)


class Fenced(ApiError):
    """A write refused before it was sent: this process no longer holds the Lease."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "Fenced", message)


class OwnerGone(ApiError):
    """A child not created: its BackgroundJob no longer exists with the uid we hold."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "OwnerGone", message)


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped at 10 min."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), 600.0)


# Object names and namespaces as the API server allows them in a path: no
# separators, no escapes, never ``.`` or ``..``.
_SEGMENT = re.compile(r"(?!\.\.?$)[A-Za-z0-9][-A-Za-z0-9._:]*")


def path(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    """The REST path of an object (or its collection) in a namespace.

    A name that is not one segment (``..``, ``a/b``, ``%2F``) never reaches a URL:
    it would point the operator's own permissions at another object.
    """
    for segment in (namespace, name):
        if segment is not None and not _SEGMENT.fullmatch(segment):
            raise ValueError(f"not a valid object name: {segment!r}")
    api_version, plural = RESOURCES[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    out = f"{base}/namespaces/{namespace}/{plural}"
    if name:
        out += f"/{name}"
    if sub:
        out += f"/{sub}"
    return out


def load_config(user_agent: str | None = None, pool_size: int = 32) -> client.ApiClient:
    """An API client from the in-cluster ServiceAccount or the kubeconfig.

    The pool holds a connection per watch plus the workers' requests; the user agent
    names the process, so the API server's audit log tells replicas apart.
    """
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    api = client.ApiClient(configuration)
    if user_agent:
        api.user_agent = user_agent
    return api


def resource_of(url: str) -> str:
    """The resource a request path names, with its subresource: ``deployments``,
    ``backgroundjobs/status``, ``leases``; ``discovery`` for a group's listing."""
    parts = url.split("?", 1)[0].strip("/").split("/")
    # api/v1/... or apis/<group>/<version>/...; then namespaces/<ns>/ or not.
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return "discovery"
    if len(rest) >= 3:
        return f"{rest[0]}/{rest[2]}"
    return rest[0]


def collection(kind: str, namespace: str | None) -> str:
    """The REST path of a kind's collection in one namespace, or in all."""
    if namespace:
        return path(kind, namespace)
    api_version, plural = RESOURCES[kind]
    base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    return f"{base}/{plural}"


class WatchStream:
    """The events of one watch request, decoded line by line from the raw response."""

    def __init__(self, response: Any) -> None:
        self._response = response  # urllib3.HTTPResponse, not preloaded

    def __iter__(self) -> Iterator[dict[str, Any]]:
        buffer = b""
        try:
            for chunk in self._response.stream(65536, decode_content=True):
                buffer += chunk
                while True:
                    line, newline, rest = buffer.partition(b"\n")
                    if not newline:
                        break
                    buffer = rest
                    if line.strip():
                        yield orjson.loads(line)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiError(0, type(error).__name__, str(error)[:500]) from None
        finally:
            self.close()
        if buffer.strip():
            yield orjson.loads(buffer)

    def close(self) -> None:
        """End the stream; safe from another thread (it unblocks a pending read)."""
        # Fails harmlessly when the response was read to its end (connection released).
        with contextlib.suppress(Exception):
            self._response.shutdown()
        with contextlib.suppress(OSError):
            self._response.close()


METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


@dataclass
class Kube:
    """The operator's API calls, each one request."""

    api: client.ApiClient
    # Called before every write: raises Fenced once this process may no longer write,
    # else returns the seconds a write may take (None: no limit but the default).
    fence: Callable[[], float | None] | None = field(default=None, repr=False)
    # Called before applying or creating an object owned by a BackgroundJob: raises
    # OwnerGone when that BackgroundJob no longer exists with the uid named.
    owner_guard: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False)
    # Writes to objects sent so far (the Lease's own excluded): a no-op pass adds none.
    writes: int = 0
    # Set on shutdown: a reconcile in flight ends at its next write instead of finishing.
    closing: bool = False

    def _send(
        self,
        method: str,
        url: str,
        query: dict[str, Any] | None,
        body: Any,
        content_type: str,
        timeout: tuple[float, float],
        fenced: bool = False,
        accept: str = "application/json",
    ) -> Any:
        if query:
            url = f"{url}?{urlencode(query)}"
        headers = {"Accept": accept, "Content-Type": content_type}
        m, full_url, hdrs, payload, _ = self.api.param_serialize(
            method=method,
            resource_path=url,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        if fenced and self.closing:
            raise Fenced("stopping: no write")
        if fenced and self.fence is not None:
            # As late as possible: nothing but the send itself between check and write.
            budget = self.fence()
            if budget is not None:
                budget = max(budget, 0.5)
                timeout = (min(timeout[0], budget), min(timeout[1], budget))
        return self.api.call_api(m, full_url, hdrs, payload, _request_timeout=timeout)

    def request(
        self,
        method: str,
        url: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
        fenced: bool = True,
        accept: str = "application/json",
    ) -> dict[str, Any]:
        """Send one request; return the decoded body or raise ApiError.

        A write is fenced (see ``fence``) unless ``fenced`` is False (the Lease's own).
        """
        fence = fenced and method in WRITES
        try:
            if fence:
                self.writes += 1  # counted before the fence: a refused write was attempted
            response = self._send(method, url, query, body, content_type, timeout, fence, accept)
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError, ApiException) as error:
            # No answer (timeout, reset, refused): transient, like a 5xx.
            metrics.API_REQUESTS.labels(method=method, resource=resource_of(url), code="0").inc()
            raise ApiError(0, type(error).__name__, str(error)[:500]) from None
        metrics.API_REQUESTS.labels(
            method=method, resource=resource_of(url), code=str(response.status)
        ).inc()
        try:
            decoded: dict[str, Any] = orjson.loads(data) if data else {}
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            if response.status < 400:
                raise
            decoded = {}  # A plain-text error, e.g. "404 page not found" from discovery.
        if response.status >= 400:
            failure = ApiError(
                response.status,
                str(decoded.get("reason") or response.reason),
                str(decoded.get("message") or data[:500]),
            )
            if response.status in (429, 503):
                failure.retry_after = retry_after(response.getheader("Retry-After"))
            raise failure
        return decoded

    def watch(
        self,
        kind: str,
        namespace: str | None,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
        connect_timeout: float = REQUEST_TIMEOUT[0],
    ) -> WatchStream:
        """Open a watch from ``resource_version``, with bookmarks; raw JSON events.

        The server ends it after ``timeout_seconds``; the client gives up on silence a
        little later, so a dead connection cannot stall the cache for longer.
        """
        query: dict[str, Any] = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if label_selector:
            query["labelSelector"] = label_selector
        timeout = (connect_timeout, timeout_seconds + WATCH_MARGIN)
        try:
            response = self._send(
                "GET", collection(kind, namespace), query, None, "application/json", timeout
            )
        except (urllib3.exceptions.HTTPError, OSError, ApiException) as error:
            raise ApiError(0, type(error).__name__, str(error)[:500]) from None
        if response.status >= 400:
            data = response.read()
            try:
                decoded = json.loads(data) if data else {}
            except ValueError:
                decoded = {}
            raise ApiError(
                response.status,
                str(decoded.get("reason") or response.reason),
                str(decoded.get("message") or data[:500]),
            )
        return WatchStream(response.response)

    def apply(
        self, manifest: dict[str, Any], manager: str = MANAGER, *, create_only: bool = False
    ) -> dict[str, Any]:
        """Server-side apply under the operator's field manager, taking over our fields.

        Another ``manager`` applies without force: a conflict is an error, not a takeover.
        ``create_only``: create the object by this apply, or fail with 409 Conflict when
        an object of that name exists (ours or anyone's) and leave it untouched: the
        apply carries a resourceVersion no object can have, a precondition the API
        server checks against an existing object and ignores on create.
        """
        meta = manifest["metadata"]
        if self.owner_guard is not None:
            self.owner_guard(manifest)
        query = {"fieldManager": manager}
        if manager == MANAGER:
            query["force"] = "true"
        if create_only:
            manifest = {**manifest, "metadata": {**meta, "resourceVersion": NO_VERSION}}
        return self.request(
            "PATCH",
            path(manifest["kind"], meta["namespace"], meta["name"]),
            query=query,
            body=manifest,
            content_type="application/apply-patch+yaml",
        )

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create an object that must never be re-applied (a run's Job)."""
        meta = manifest["metadata"]
        if self.owner_guard is not None:
            self.owner_guard(manifest)
        return self.request(
            "POST",
            path(manifest["kind"], meta["namespace"]),
            query={"fieldManager": MANAGER},
            body=manifest,
        )

    def delete(self, kind: str, namespace: str, name: str, propagation: str) -> None:
        """Delete an object; gone already counts as done."""
        try:
            self.request(
                "DELETE",
                path(kind, namespace, name),
                body={"propagationPolicy": propagation},
            )
        except ApiError as error:
            if error.status != 404:
                raise

    def served(self, kind: str) -> bool:
        """Whether the API server serves this kind's resource (its CRD is installed)."""
        api_version, plural = RESOURCES[kind]
        base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        try:
            listing = self.request("GET", base)
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return any(r.get("name") == plural for r in listing.get("resources") or [])

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Read one object, or None when it does not exist."""
        try:
            return self.request("GET", path(kind, namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def list(
        self, kind: str, label_selector: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """List objects of a kind (in one namespace or all), following pagination."""
        return self._paged(kind, namespace, label_selector)

    def _paged(
        self,
        kind: str,
        namespace: str | None,
        label_selector: str,
        *,
        most: int | None = None,
        page: int = 500,
        metadata_only: bool = False,
    ) -> builtins.list[dict[str, Any]]:
        """The one paging loop: pages of ``page`` objects until the last, or until
        ``most`` objects when given (never a page beyond them)."""
        items: builtins.list[dict[str, Any]] = []
        token: str | None = None
        while most is None or len(items) < most:
            got = self.list_page(
                kind,
                namespace,
                label_selector=label_selector,
                limit=page if most is None else min(page, most - len(items)),
                token=token,
                metadata_only=metadata_only,
            )
            items.extend(got.get("items") or [])
            token = (got.get("metadata") or {}).get("continue")
            if not token:
                break
        return items if most is None else items[:most]

    def list_page(
        self,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        limit: int = 500,
        token: str | None = None,
        metadata_only: bool = False,
    ) -> dict[str, Any]:
        """One page of a LIST (raw JSON); ``metadata.continue`` names the next one.
        ``metadata_only``: the objects' metadata alone (PartialObjectMetadataList)."""
        query: dict[str, Any] = {"limit": limit}
        if label_selector:
            query["labelSelector"] = label_selector
        if token:
            query["continue"] = token
        accept = METADATA_LIST if metadata_only else "application/json"
        return self.request("GET", collection(kind, namespace), query=query, accept=accept)

    def list_metadata(
        self, kind: str, label_selector: str, namespace: str, *, most: int, page: int = 50
    ) -> builtins.list[dict[str, Any]]:
        """The metadata of at most ``most`` objects of a kind, in small pages: never the
        objects themselves, however big a tenant made them."""
        return self._paged(
            kind, namespace, label_selector, most=most, page=page, metadata_only=True
        )

    def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply the BackgroundJob's status subresource."""
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": name},
            "status": status,
        }
        return self.request(
            "PATCH",
            path(KIND, namespace, name, "status"),
            query={"fieldManager": MANAGER, "force": "true"},
            body=body,
            content_type="application/apply-patch+yaml",
        )

    def event(self, involved: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """Record a core/v1 Event on an object (``kind``: Normal or Warning)."""
        meta = involved["metadata"]
        now = rfc3339(datetime.now(UTC))
        self.request(
            "POST",
            path("Event", meta["namespace"]),
            body={
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{meta['name']}.{uuid.uuid4().hex[:12]}",
                    "namespace": meta["namespace"],
                },
                "involvedObject": {
                    "apiVersion": involved.get("apiVersion", API_VERSION),
                    "kind": involved.get("kind", KIND),
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "type": kind,
                "reason": reason,
                "message": message[:1024],
                "source": {"component": MANAGER},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            },
        )
