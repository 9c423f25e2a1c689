"""What `kubectl apply` and the API server do to a manifest before the operator sees it.

``render`` must give the API server's verdict on any input, so this module reads
YAML the way kubectl does (YAML 1.1 scalars as go-yaml v2 resolves them, times
kept as text, integral floats as integers, bounded aliases, depth and size) and
checks what the API server checks outside the CRD schema: the object's kind and
version, unknown top-level fields, and ``metadata`` (types, a DNS-subdomain name,
a DNS-label namespace, label and annotation syntax). ``admit`` then validates
the BackgroundJob through the models, whose rules are the CRD's.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from bgjob.api.models import API_VERSION, GROUP, KIND, BackgroundJob, InvalidSpec, parse

MAX_BYTES = 3 * 1024 * 1024  # the API server's request body limit
MAX_NODES = 100_000  # after expanding aliases: a billion laughs stops here
MAX_DEPTH = 100

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"
_NAME_PART = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_METADATA_FIELDS = {
    "name": str,
    "generateName": str,
    "namespace": str,
    "labels": dict,
    "annotations": dict,
    "uid": str,
    "resourceVersion": str,
    "generation": int,
    "creationTimestamp": str,
    "deletionTimestamp": str,
    "deletionGracePeriodSeconds": int,
    "ownerReferences": list,
    "finalizers": list,
    "managedFields": list,
    "selfLink": str,
}
_TOP_LEVEL = {"apiVersion", "kind", "metadata", "spec", "status"}
MAX_ANNOTATIONS_BYTES = 256 * 1024


class ManifestError(ValueError):
    """Input that never reaches the API server: not YAML, too big, not an object."""


# --- reading YAML as kubectl does ---------------------------------------------------------


class KubeLoader(yaml.SafeLoader):
    """SafeLoader with go-yaml v2's scalars: y/n are booleans, times stay strings."""


# PyYAML reads numbers as YAML 1.1 does (1:30 is 90, 1e3 is a string); go-yaml v2,
# which kubectl uses, does not: its own rules are in ``_go_number``.
_PYYAML_ONLY = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
GO_NUMBER_TAG = "tag:bgjob.dev,2026:go-number"
KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _PYYAML_ONLY]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
KubeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN")
)
# Anything that may be a number; ``_go_number`` decides, and keeps the rest as text.
KubeLoader.add_implicit_resolver(
    GO_NUMBER_TAG, re.compile(r"^[-+._0-9][-+._0-9a-zA-Z]*$"), list("-+._0123456789")
)

_GO_INT = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_GO_SPECIAL = {
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
}


def _go_number(text: str) -> int | float | str:
    """A plain scalar as go-yaml v2 resolves it: strconv.ParseInt(s, 0, 64), then
    ParseUint, then its float pattern, after dropping every underscore; else text."""
    if text in _GO_SPECIAL:
        return _GO_SPECIAL[text]
    plain = text.replace("_", "")
    whole = _GO_INT.fullmatch(plain)
    if whole is not None:
        sign, digits = whole.groups()
        base = 8 if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit() else 0
        value = int(digits, base) * (-1 if sign == "-" else 1)
        if -(2**63) <= value < 2**63 or (not sign and value < 2**64):
            return value
    if _GO_FLOAT.fullmatch(plain):
        number = float(plain)
        if math.isfinite(number):  # ParseFloat fails on overflow: then it is text
            return number
    return text


def _number(loader: yaml.SafeLoader, node: yaml.Node) -> int | float | str:
    return _go_number(str(loader.construct_scalar(node)))  # type: ignore[arg-type]


def _bool(loader: yaml.SafeLoader, node: yaml.Node) -> bool:
    return str(loader.construct_scalar(node)).lower() in ("y", "yes", "true", "on")  # type: ignore[arg-type]


def _text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


KubeLoader.add_constructor("tag:yaml.org,2002:bool", _bool)
KubeLoader.add_constructor("tag:yaml.org,2002:timestamp", _text)
KubeLoader.add_constructor(GO_NUMBER_TAG, _number)


def _key(key: Any) -> str:
    """A map key as JSON text, the way kubectl converts YAML to JSON."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float) and math.isfinite(key):
        return repr(key)
    raise ManifestError(f"unsupported map key {key!r}")


def _jsonable(value: Any, depth: int, budget: list[int]) -> Any:
    """A copy with JSON types only; aliases expanded within budget, depth bounded."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ManifestError(f"document too large: more than {MAX_NODES} values after aliases")
    if depth > MAX_DEPTH:
        raise ManifestError(f"document nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {_key(k): _jsonable(v, depth + 1, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v, depth + 1, budget) for v in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ManifestError(f"unsupported value {value!r}: JSON has no NaN or infinity")
        if value.is_integer() and abs(value) < 2**63:
            return int(value)
        return value
    if value is None or isinstance(value, str | int | bool):
        return value
    raise ManifestError(f"unsupported value of type {type(value).__name__}")


def load_documents(data: bytes) -> list[Any]:
    """The documents of a YAML or JSON stream; ManifestError for anything kubectl refuses."""
    if len(data) > MAX_BYTES:
        raise ManifestError(f"larger than {MAX_BYTES} bytes")
    # Invalid UTF-8 becomes U+FFFD, as in kubectl (Go): a name with it is then invalid.
    text = data.decode("utf-8", errors="replace")
    try:
        # The event parser is iterative; the composer recurses: measure depth first.
        depth = 0
        for event in yaml.parse(text, Loader=KubeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ManifestError(f"document nested deeper than {MAX_DEPTH} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        raw = list(yaml.load_all(text, Loader=KubeLoader))  # a SafeLoader
    except yaml.YAMLError as error:
        raise ManifestError(f"invalid YAML: {error}".replace("\n", " ")) from None
    except RecursionError:
        raise ManifestError(f"document nested deeper than {MAX_DEPTH} levels") from None
    return [_jsonable(doc, 0, [MAX_NODES]) for doc in raw if doc is not None]


# --- what the API server checks besides the CRD schema ------------------------------------


def _qualified_name(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, prefix)):
        return "prefix must be a DNS subdomain"
    if not name or len(name) > 63 or not re.fullmatch(_NAME_PART, name):
        return "name part must be 63 characters or less, alphanumeric, '-', '_' or '.'"
    return None


def metadata_errors(meta: Any) -> list[str]:
    """What the API server says about an object's metadata on create, one line each."""
    if meta is None:
        return ["metadata.name: Required value: resource name may not be empty"]
    if not isinstance(meta, dict):
        return ["metadata: must be an object"]
    out: list[str] = []
    for key, value in meta.items():
        expected = _METADATA_FIELDS.get(key)
        if expected is None:
            out.append(f'metadata.{key}: unknown field "metadata.{key}"')
        elif value is not None and (
            not isinstance(value, expected) or isinstance(value, bool) != (expected is bool)
        ):
            out.append(f"metadata.{key}: must be of type {expected.__name__}")
    if out:
        return out
    name = meta.get("name")
    if not name:
        out.append("metadata.name: Required value: name is required")
    elif len(name) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, name):
        out.append(
            f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain "
            "(lowercase letters, digits, '-' and '.', at most 253 characters)"
        )
    namespace = meta.get("namespace")
    if namespace is not None and (len(namespace) > 63 or not re.fullmatch(_DNS_LABEL, namespace)):
        out.append(
            f"metadata.namespace: Invalid value: {namespace!r}: a lowercase RFC 1123 label "
            "(lowercase letters, digits and '-', at most 63 characters)"
        )
    for key, value in (meta.get("labels") or {}).items():
        problem = _qualified_name(key)
        if problem:
            out.append(f"metadata.labels: Invalid value: {key!r}: {problem}")
        if not isinstance(value, str):
            out.append(f"metadata.labels.{key}: must be of type string")
        elif value and (len(value) > 63 or not re.fullmatch(_NAME_PART, value)):
            out.append(
                f"metadata.labels: Invalid value: {value!r}: a label value is 63 characters "
                "or less, alphanumeric, '-', '_' or '.'"
            )
    annotations = meta.get("annotations") or {}
    for key, value in annotations.items():
        problem = _qualified_name(key)
        if problem:
            out.append(f"metadata.annotations: Invalid value: {key!r}: {problem}")
        if not isinstance(value, str):
            out.append(f"metadata.annotations.{key}: must be of type string")
    size = sum(len(k) + len(v) for k, v in annotations.items() if isinstance(v, str))
    if size > MAX_ANNOTATIONS_BYTES:
        out.append(
            f"metadata.annotations: Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes"
        )
    return out


def is_backgroundjob(doc: Any) -> bool:
    """A document render takes: of our kind and group (its version is checked later)."""
    return (
        isinstance(doc, dict)
        and doc.get("kind") == KIND
        and isinstance(doc.get("apiVersion"), str)
        and doc["apiVersion"].split("/")[0] == GROUP
    )


def admit(doc: dict[str, Any], namespace: str = "default") -> BackgroundJob:
    """The API server's verdict on creating this object: the parsed object, or InvalidSpec."""
    problems: list[str] = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: no {KIND} in version {doc.get('apiVersion')!r}")
    problems += [f'{key}: unknown field "{key}"' for key in doc if key not in _TOP_LEVEL]
    meta = doc.get("metadata")
    problems += metadata_errors(meta)
    if problems:
        raise InvalidSpec("; ".join(problems))
    assert isinstance(meta, dict)
    # Status is the operator's: the API server drops it from a create.
    body = {key: value for key, value in doc.items() if key != "status"}
    body["metadata"] = {**meta, "namespace": meta.get("namespace") or namespace}
    return parse(body)
