"""Names and small types every layer shares: the field manager, labels, annotations.

They sit next to the API so the cache and the client read them here instead of
importing them upward from the manifest builders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# A Kubernetes object as the API server sends it, or as we build it.
Body = dict[str, Any]

MANAGER = "bgjob-operator"
CONTAINER_NAME = "worker"
SHUTDOWN_ENV = "BGJOB_SHUTDOWN_TIMEOUT_SECONDS"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TRIGGER = "bgjob.dev/trigger"
# Which kind of run a Job is: once, manual (run-now) or scheduled (by the CronJob).
RUN_KIND_LABEL = "bgjob.dev/run"

SPEC_HASH_ANNOTATION = "bgjob.dev/spec-hash"
RUN_NOW_ANNOTATION = "bgjob.dev/run-now"
# On the once-run's Job: the BackgroundJob uid and generation it was started for.
ONCE_RUN_ANNOTATION = "bgjob.dev/once-run"

RunKind = Literal["once", "manual", "scheduled"]
EventType = Literal["Normal", "Warning"]
ScalingEngine = Literal["builtin", "keda"]
Propagation = Literal["Foreground", "Background"]

SCALING_ENGINES: tuple[ScalingEngine, ...] = ("builtin", "keda")


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to record on the BackgroundJob."""

    type: EventType
    reason: str
    message: str
