"""Structural-schema validation in Python, with the API server's verdict.

The pod template overlay's schema (``podspec.schema.json``, generated from the
API server's own core/v1 PodSpec by hack/podspec_schema.py) goes into the CRD
as it is, and ``errors`` checks a value against it here: types, unknown fields,
required fields, enums, and the uniqueness of ``x-kubernetes-list-type`` map
keys and set items. So ``bgjob-operator render`` and the reconciler reject what
admission rejects, naming the same field.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


@cache
def podspec_schema() -> dict[str, Any]:
    """The structural schema of a core/v1 PodSpec overlay."""
    text = resources.files("bgjob.api").joinpath("podspec.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "boolean"
    return isinstance(value, _TYPES[kind])


def _type_name(value: Any) -> str:
    for name in ("boolean", "integer", "number", "string", "array", "object"):
        if _is(value, name):
            return name
    return type(value).__name__


def errors(schema: dict[str, Any], value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every (field path, message) where value breaks schema; empty when it holds."""
    found: list[tuple[str, str]] = []
    _check(schema, value, path, found)
    return found


def _check(schema: dict[str, Any], value: Any, path: str, found: list[tuple[str, str]]) -> None:
    if schema.get("x-kubernetes-int-or-string"):
        if not (_is(value, "integer") or _is(value, "string")):
            found.append((path, f"must be an integer or a string, not {_type_name(value)}"))
        return
    kind = schema.get("type")
    if kind is not None and not _is(value, kind):
        found.append((path, f"must be of type {kind}, not {_type_name(value)}"))
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) for v in schema["enum"])
        found.append((path, f"Unsupported value: {json.dumps(value)}: supported values: {allowed}"))
    if isinstance(value, dict):
        _check_object(schema, value, path, found)
    elif isinstance(value, list):
        _check_array(schema, value, path, found)


def _check_object(
    schema: dict[str, Any], value: dict[str, Any], path: str, found: list[tuple[str, str]]
) -> None:
    properties = schema.get("properties")
    # The API server drops nulls of fields that are not nullable before validating.
    present = {key: item for key, item in value.items() if item is not None}
    for key in schema.get("required", ()):
        if key not in present:
            found.append((f"{path}.{key}", "Required value"))
    if properties is not None:
        for key, item in present.items():
            if key in properties:
                _check(properties[key], item, f"{path}.{key}", found)
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                found.append((f"{path}.{key}", f'unknown field "{key}"'))
    elif isinstance(schema.get("additionalProperties"), dict):
        for key, item in present.items():
            _check(schema["additionalProperties"], item, f"{path}.{key}", found)


def _check_array(
    schema: dict[str, Any], value: list[Any], path: str, found: list[tuple[str, str]]
) -> None:
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            _check(items, item, f"{path}[{index}]", found)
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        seen_items: list[Any] = []
        for index, item in enumerate(value):
            if item in seen_items:
                found.append((f"{path}[{index}]", f"Duplicate value: {json.dumps(item)}"))
            seen_items.append(item)
    elif list_type == "map" and isinstance(items, dict):
        keys = schema.get("x-kubernetes-list-map-keys", [])
        defaults = {k: (items.get("properties") or {}).get(k, {}).get("default") for k in keys}
        seen_keys: list[Any] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            key = {k: item.get(k, defaults[k]) for k in keys}
            if key in seen_keys:
                found.append((f"{path}[{index}]", f"Duplicate value: {json.dumps(key)}"))
            seen_keys.append(key)
