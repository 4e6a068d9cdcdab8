"""A strict check of an object against a Kubernetes release's published OpenAPI v3 schema.

The apiserver's OpenAPI documents allow unknown fields (no ``additionalProperties: false``),
so a plain JSON-schema validation would accept a field that release does not have. This
walk refuses any field the schema does not list, and checks types, required fields and
enums, which is what "valid on release X" means for a manifest nvtopo writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["Schemas", "problems"]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


class Schemas:
    """The ``components.schemas`` of one or more OpenAPI v3 documents."""

    def __init__(self, *documents: Path) -> None:
        self.defs: dict[str, Any] = {}
        for path in documents:
            self.defs.update(json.loads(path.read_text())["components"]["schemas"])

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """Follow ``$ref`` and single-element ``allOf`` wrappers."""
        while True:
            if "$ref" in schema:
                schema = self.defs[schema["$ref"].rsplit("/", 1)[-1]]
            elif "allOf" in schema and len(schema["allOf"]) == 1:
                schema = schema["allOf"][0]
            else:
                return schema


def _kind(value: Any) -> str:
    return type(value).__name__


def problems(schemas: Schemas, value: Any, name: str, path: str = "") -> list[str]:
    """Every way ``value`` departs from schema ``name`` (``io.k8s.api.resource.v1.X``)."""
    return _walk(schemas, value, schemas.defs[name], path or name.rsplit(".", 1)[-1])


def _walk(schemas: Schemas, value: Any, schema: Mapping[str, Any], path: str) -> list[str]:
    schema = schemas.resolve(schema)
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string") or schema.get(
        "x-kubernetes-preserve-unknown-fields"
    ):
        return []
    if kind is None and "properties" not in schema:
        return []  # Quantity, Time and the like: a string the server parses
    out: list[str] = []
    if kind in _TYPES and (
        not isinstance(value, _TYPES[kind]) or (kind != "boolean" and isinstance(value, bool))
    ):
        return [f"{path}: {_kind(value)} where the schema wants {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key in schema.get("required") or []:
            if key not in value:
                out.append(f"{path}: required field {key!r} missing")
        for key, item in value.items():
            if key in props:
                out.extend(_walk(schemas, item, props[key], f"{path}.{key}"))
            elif isinstance(extra, Mapping):
                out.extend(_walk(schemas, item, extra, f"{path}[{key!r}]"))
            elif not extra:
                out.append(f"{path}: unknown field {key!r}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out.extend(_walk(schemas, item, schema["items"], f"{path}[{i}]"))
    return out
