#!/usr/bin/env python3
"""Regenerate operator/bgjob/api/podspec.schema.json from a real API server.

    hack/podspec_schema.py                 # reads /openapi/v3/api/v1 through kubectl
    hack/podspec_schema.py openapi.json    # or a saved copy of that document

The BackgroundJob's ``spec.template.spec`` is a core/v1 PodSpec overlay. Its CRD
schema is the API server's own PodSpec schema, made structural for a CRD:
``$ref``/``allOf`` inlined, quantities and int-or-string ports as
``x-kubernetes-int-or-string``, list and map markers kept, patch-strategy and
format hints dropped, each description cut to its first sentence (``kubectl
explain`` goes all the way down, and the CRD stays well under the 256 KiB a
client-side apply annotation allows). ``containers`` is not required: the
overlay adds to the generated pod.

Python 3.11 standard library only. The result is committed; `make crd` does not
call this script, so the CRD is reproducible without a cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "operator" / "bgjob" / "api" / "podspec.schema.json"
PREFIX = "#/components/schemas/"
# Kept as they are: what a CRD's structural schema understands.
KEEP = {
    "type",
    "properties",
    "items",
    "additionalProperties",
    "required",
    "enum",
    "default",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
}
ZERO: tuple[Any, ...] = (None, {}, [], "", 0, False)
INT_OR_STRING = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
}


def first_sentence(text: str) -> str:
    head = text.split("\n\n", 1)[0].strip()
    cut = head.find(". ")
    return head if cut < 0 else head[: cut + 1]


def convert(
    node: dict[str, Any], schemas: dict[str, Any], owner: str, seen: tuple[str, ...]
) -> Any:
    if "allOf" in node:
        (inner,) = node["allOf"]
        node = {**{k: v for k, v in node.items() if k != "allOf"}, **inner}
    if "$ref" in node:
        name = node["$ref"].removeprefix(PREFIX)
        if name in seen:
            raise ValueError(f"recursive schema {name}")
        if name in INT_OR_STRING:
            return {"x-kubernetes-int-or-string": True}
        target = schemas[name]
        out = convert(target, schemas, name, (*seen, name))
        if node.get("default") not in ZERO:
            out["default"] = node["default"]
        return out
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in KEEP:
            continue
        if key == "properties":
            out[key] = {}
            for prop, sub in value.items():
                converted = convert(sub, schemas, owner, seen)
                if sub.get("description"):
                    converted["description"] = first_sentence(sub["description"])
                out[key][prop] = converted
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = convert(value, schemas, owner, seen)
        elif key == "default" and value in ZERO:
            continue  # the API server fills zero values in anyway; "" breaks enums
        else:
            out[key] = value
    if out.get("x-kubernetes-list-type") == "map":
        # A CRD wants each map key required or defaulted: default to the zero value.
        items = out["items"]
        for key in out["x-kubernetes-list-map-keys"]:
            prop = items["properties"][key]
            if key not in items.get("required", ()) and "default" not in prop:
                prop["default"] = {"string": "", "integer": 0}[prop["type"]]
    if (
        out.get("type") == "object"
        and not out.get("properties")
        and "additionalProperties" not in out
    ):
        # An empty struct (e.g. emptyDir: {}) keeps whatever it is given, as Kubernetes does.
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def main() -> int:
    if len(sys.argv) > 1:
        document = json.loads(Path(sys.argv[1]).read_text())
    else:
        raw = subprocess.run(
            ["kubectl", "get", "--raw", "/openapi/v3/api/v1"],
            check=True,
            capture_output=True,
            timeout=60,
        ).stdout
        document = json.loads(raw)
    schemas = document["components"]["schemas"]
    podspec = convert({"$ref": PREFIX + "io.k8s.api.core.v1.PodSpec"}, schemas, "", ())
    # An overlay: the operator writes the worker container; the user adds to it.
    podspec["required"] = [r for r in podspec.get("required", []) if r != "containers"]
    if not podspec["required"]:
        del podspec["required"]
    text = json.dumps(podspec, sort_keys=True, separators=(",", ":")) + "\n"
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(REPO)} ({len(text)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
