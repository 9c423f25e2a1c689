"""Generate the BackgroundJob CRD from the pydantic models.

Pydantic emits JSON Schema with ``$ref``, ``anyOf`` for optionals and titles;
the API server wants a structural OpenAPI v3 schema. ``structural`` rewrites one
into the other, and each model's ``rules`` become ``x-kubernetes-validations``.
"""

from __future__ import annotations

from typing import Any

import yaml

from bgjob.api import models
from bgjob.api.models import ApiModel

# Columns of `kubectl get bgj`.
READY_CONDITION = '.status.conditions[?(@.type=="Ready")]'
# Health first: the Ready condition users `kubectl wait` on, then state and why.
# `-o wide` (priority 1) adds the pod counts, the backlog and the message.
PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": f"{READY_CONDITION}.status",
        "description": "The Ready condition: kubectl wait --for=condition=Ready",
    },
    {"name": "State", "type": "string", "jsonPath": ".status.state"},
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": f"{READY_CONDITION}.reason",
        "description": "Why it is, or is not, Ready",
    },
    {"name": "Trigger", "type": "string", "jsonPath": ".status.trigger"},
    {"name": "Last Run", "type": "string", "jsonPath": ".status.lastRun.result"},
    # A string: the "date" type prints future times as <invalid>.
    {"name": "Next Run", "type": "string", "jsonPath": ".status.nextRunTime"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Desired",
        "type": "integer",
        "jsonPath": ".status.desiredReplicas",
        "priority": 1,
        "description": "Pods wanted now",
    },
    {
        "name": "Ready Pods",
        "type": "integer",
        "jsonPath": ".status.readyReplicas",
        "priority": 1,
        "description": "Pods that are ready",
    },
    {
        "name": "Queue",
        "type": "integer",
        "jsonPath": ".status.queueLength",
        "priority": 1,
        "description": "Backlog last read (queue trigger)",
    },
    {"name": "Message", "type": "string", "jsonPath": f"{READY_CONDITION}.message", "priority": 1},
]

_DROPPED_KEYS = {"title", "$defs", "additionalProperties"}


def _rules_by_model() -> dict[str, list[dict[str, str]]]:
    """Map each model's name (its JSON-schema definition) to its CEL rules."""
    found: dict[str, list[dict[str, str]]] = {}
    pending: list[type[ApiModel]] = [models.BackgroundJob]
    while pending:
        model = pending.pop()
        if model.__name__ in found:
            continue
        found[model.__name__] = [rule.as_crd() for rule in model.rules]
        for field in model.model_fields.values():
            for candidate in _model_types(field.annotation):
                pending.append(candidate)
    return found


def _model_types(annotation: Any) -> list[type[ApiModel]]:
    """The ApiModel classes mentioned by a field's annotation."""
    if isinstance(annotation, type) and issubclass(annotation, ApiModel):
        return [annotation]
    out: list[type[ApiModel]] = []
    for arg in getattr(annotation, "__args__", ()):
        out.extend(_model_types(arg))
    return out


def structural(node: Any, defs: dict[str, Any], rules: dict[str, list[dict[str, str]]]) -> Any:
    """Rewrite one pydantic JSON-schema node into structural OpenAPI v3."""
    if isinstance(node, list):
        return [structural(item, defs, rules) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    model_name = None
    while "$ref" in node or "anyOf" in node:
        if "anyOf" in node:
            options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
            if len(options) != 1 and not all("x-kubernetes-int-or-string" in o for o in options):
                raise ValueError(f"cannot express anyOf {options!r} structurally")
            node = {**options[0], **node}
        if "$ref" in node:
            model_name = node.pop("$ref").rsplit("/", 1)[1]
            # Sibling keys (the field's own description, default) win over the model's.
            node = {**defs[model_name], **node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out[key] = {name: structural(sub, defs, rules) for name, sub in value.items()}
        elif key in ("items",):
            out[key] = structural(value, defs, rules)
        elif key == "default" and value is None:
            continue
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    if "properties" not in node and isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = structural(node["additionalProperties"], defs, rules)
    if "properties" in out:
        out.setdefault("type", "object")
    if model_name and rules.get(model_name):
        out["x-kubernetes-validations"] = [dict(rule) for rule in rules[model_name]]
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    return out


def _status_conditions_as_map(status: dict[str, Any]) -> None:
    """Conditions merge by type (server-side apply list semantics)."""
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]


def _mark_lists(node: Any) -> None:
    """Lists of objects keyed by name merge by name, as in core/v1."""
    if not isinstance(node, dict):
        return
    props = node.get("properties", {})
    for name in ("env",):
        if name in props:
            props[name]["x-kubernetes-list-type"] = "map"
            props[name]["x-kubernetes-list-map-keys"] = ["name"]
    for sub in props.values():
        _mark_lists(sub)
    if "items" in node:
        _mark_lists(node["items"])


def openapi_schema() -> dict[str, Any]:
    """The structural schema of a whole BackgroundJob object."""
    raw = models.BackgroundJob.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    rules = _rules_by_model()
    spec = structural(raw["properties"]["spec"], defs, rules)
    status = structural(raw["properties"]["status"], defs, rules)
    status.pop("default", None)
    spec.pop("default", None)
    _status_conditions_as_map(status)
    _mark_lists(spec)
    return {
        "type": "object",
        "description": models.BackgroundJob.__doc__,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "bgjob.dev/v1alpha1"},
            "kind": {"type": "string", "description": "BackgroundJob"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [dict(rule) for rule in rules["BackgroundJob"]],
    }


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{models.PLURAL}.{models.GROUP}",
            "labels": {"app.kubernetes.io/name": "bgjob-operator"},
        },
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": models.KIND,
                "listKind": f"{models.KIND}List",
                "plural": models.PLURAL,
                "singular": models.SINGULAR,
                "shortNames": models.SHORT_NAMES,
                "categories": ["all"],
            },
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML committed in crds/ and the Helm chart."""
    header = "# Generated by `bgjob-operator crd` from operator/bgjob/api/models.py. Do not edit.\n"
    return header + yaml.dump(crd(), Dumper=NoAliasDumper, sort_keys=False, width=100)


class NoAliasDumper(yaml.SafeDumper):
    """A dumper that writes repeated values out instead of YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
