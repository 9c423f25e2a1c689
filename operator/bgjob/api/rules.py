"""Cross-field validation rules, declared once for both the API server and Python.

Each rule carries its CEL form (written into the CRD as ``x-kubernetes-validations``,
so the API server rejects a bad object at admission) and the same predicate in
Python (so ``bgjob-operator render`` and the reconciler reject it too). A test
checks both forms agree on every example manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """A validation rule on one schema node: CEL for admission, ``holds`` for Python."""

    cel: str
    message: str
    holds: Callable[[Any], bool]
    # Relative to the node carrying the rule, in the CRD's ``fieldPath`` form (".a.b").
    field_path: str = ""
    reason: str = "FieldValueInvalid"

    def as_crd(self) -> dict[str, str]:
        """The rule as one ``x-kubernetes-validations`` entry."""
        entry = {"rule": self.cel, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        entry["reason"] = self.reason
        return entry


def exactly_one(obj: Any, *names: str) -> bool:
    """True when exactly one of the named attributes is set (not None)."""
    return sum(getattr(obj, name) is not None for name in names) == 1


def exactly_one_cel(*names: str) -> str:
    """CEL for 'exactly one of these optional fields is present'."""
    listed = ", ".join(f"has(self.{name})" for name in names)
    return f"[{listed}].filter(x, x).size() == 1"


@dataclass(frozen=True)
class FieldRule:
    """A rule on one scalar field (CEL ``self`` is the value), for admission and Python.

    Written into the field's own schema node, so the API server names that field
    in its message, as Python does.
    """

    cel: str
    message: str
    holds: Callable[[Any], bool]
    reason: str = "FieldValueInvalid"

    def as_crd(self) -> dict[str, str]:
        """The rule as one ``x-kubernetes-validations`` entry."""
        return {"rule": self.cel, "message": self.message, "reason": self.reason}


# Kubernetes int32 fields (replicas, parallelism, backoffLimit, ...) and the
# bound every other count or duration in seconds stays under.
INT32_MAX = 2**31 - 1
