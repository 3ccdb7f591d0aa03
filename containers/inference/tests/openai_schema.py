"""Validate bodies against OpenAI's own OpenAPI document (shared/openai-openapi), resolving $refs.

The document is OpenAPI 3.1 but still marks some fields `nullable: true` (3.0's idiom, which JSON Schema ignores):
those are rewritten to also accept null, which is what the spec means by them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).resolve().parents[3] / "shared" / "openai-openapi" / "openai-openapi.yaml"
if not SPEC.exists():  # the checkout sits beside shared/ in CI and under /work/main here
    SPEC = Path(__file__).resolve().parents[4] / "shared" / "openai-openapi" / "openai-openapi.yaml"


def _nullable(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _nullable(v) for k, v in node.items()}
        if node.pop("nullable", False):
            return {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


@functools.cache
def _document() -> dict[str, Any]:
    return _nullable(yaml.safe_load(SPEC.read_text()))


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(
        "urn:openai", Resource.from_contents(_document(), default_specification=DRAFT202012)
    )


def validate(body: Any, schema_name: str) -> None:
    """Raise jsonschema.ValidationError unless body matches components.schemas[schema_name]."""
    schema = {"$ref": f"urn:openai#/components/schemas/{schema_name}"}
    jsonschema.Draft202012Validator(schema, registry=_registry()).validate(body)
