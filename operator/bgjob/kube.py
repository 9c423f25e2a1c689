"""A thin, typed door to the Kubernetes API: apply, create, delete, status, events.

The official client's generated methods are per kind; the operator handles four
kinds the same way, so it speaks REST through the client's ``ApiClient`` (which
keeps authentication, TLS and token refresh) with one small resource table.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from bgjob.api.models import API_VERSION, KIND, PLURAL
from bgjob.api.names import MANAGER

# kind -> (apiVersion, plural)
RESOURCES: dict[str, tuple[str, str]] = {
    "Deployment": ("apps/v1", "deployments"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "CronJob": ("batch/v1", "cronjobs"),
    "Job": ("batch/v1", "jobs"),
    KIND: (API_VERSION, PLURAL),
    "Secret": ("v1", "secrets"),
    "Event": ("v1", "events"),
    "Lease": ("coordination.k8s.io/v1", "leases"),
    "ScaledObject": ("keda.sh/v1alpha1", "scaledobjects"),
    "TriggerAuthentication": ("keda.sh/v1alpha1", "triggerauthentications"),
}
CHILD_KINDS = ("Deployment", "StatefulSet", "CronJob", "Job")
# Children in KEDA mode; their resources exist only where KEDA's CRDs are installed.
KEDA_KINDS = ("ScaledObject", "TriggerAuthentication")
REQUEST_TIMEOUT = (5, 30)  # connect, read seconds: never hang a worker thread


class ApiError(Exception):
    """A failed API call, with the HTTP status and the server's message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def permanent(self) -> bool:
        """True when sending the same request again cannot succeed (invalid, forbidden)."""
        return self.status in (400, 403, 422)


def path(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    """The REST path of an object (or its collection) in a namespace."""
    api_version, plural = RESOURCES[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    out = f"{base}/namespaces/{namespace}/{plural}"
    if name:
        out += f"/{name}"
    if sub:
        out += f"/{sub}"
    return out


def load_config() -> client.ApiClient:
    """An API client from the in-cluster ServiceAccount or the kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


@dataclass
class Kube:
    """The operator's API calls, each one request."""

    api: client.ApiClient

    def request(
        self,
        method: str,
        url: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ) -> dict[str, Any]:
        """Send one request; return the decoded body or raise ApiError."""
        if query:
            url = f"{url}?{urlencode(query)}"
        headers = {"Accept": "application/json", "Content-Type": content_type}
        m, full_url, hdrs, payload, _ = self.api.param_serialize(
            method=method,
            resource_path=url,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(m, full_url, hdrs, payload, _request_timeout=timeout)
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError, ApiException) as error:
            # No answer (timeout, reset, refused): transient, like a 5xx.
            raise ApiError(0, type(error).__name__, str(error)[:500]) from None
        try:
            decoded: dict[str, Any] = json.loads(data) if data else {}
        except ValueError:
            if response.status < 400:
                raise
            decoded = {}  # A plain-text error, e.g. "404 page not found" from discovery.
        if response.status >= 400:
            raise ApiError(
                response.status,
                str(decoded.get("reason") or response.reason),
                str(decoded.get("message") or data[:500]),
            )
        return decoded

    def apply(self, manifest: dict[str, Any], manager: str = MANAGER) -> dict[str, Any]:
        """Server-side apply under the operator's field manager, taking over our fields.

        Another ``manager`` applies without force: a conflict is an error, not a takeover.
        """
        meta = manifest["metadata"]
        query = {"fieldManager": manager}
        if manager == MANAGER:
            query["force"] = "true"
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
        api_version, plural = RESOURCES[kind]
        if namespace:
            base = path(kind, namespace)
        else:
            group = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
            base = f"{group}/{plural}"
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {"labelSelector": label_selector, "limit": 500}
        while True:
            page = self.request("GET", base, query=query)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            query["continue"] = token

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
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
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
