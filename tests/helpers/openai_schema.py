"""Validate response bodies against OpenAI's own OpenAPI schemas (../shared/openai-openapi)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "openai-openapi" / "openai-openapi.yaml"
URI = "urn:openai-openapi"


def _openapi30_keywords(node: Any) -> Any:
    """The spec is OpenAPI 3.1 but keeps some 3.0 keywords (`exclusiveMinimum: true` next to `minimum`,
    `nullable: true`). Read them as 3.0 meant them; JSON Schema 2020-12 would read `true` as the number 1."""
    if isinstance(node, dict):
        node = {k: _openapi30_keywords(v) for k, v in node.items()}
        if node.get("exclusiveMinimum") is True and "minimum" in node:
            node["exclusiveMinimum"] = node.pop("minimum")
        if node.get("exclusiveMaximum") is True and "maximum" in node:
            node["exclusiveMaximum"] = node.pop("maximum")
        if node.pop("nullable", False) is True:
            node = {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_openapi30_keywords(v) for v in node]
    return node


@lru_cache(maxsize=1)
def _registry() -> Registry:
    spec = _openapi30_keywords(yaml.safe_load(SPEC.read_text()))
    return Registry().with_resource(URI, Resource.from_contents(spec, default_specification=DRAFT202012))


def assert_openai(schema: str, body: Any) -> None:
    """Raise if body does not satisfy components/schemas/<schema> of the official spec."""
    validator = jsonschema.Draft202012Validator({"$ref": f"{URI}#/components/schemas/{schema}"}, registry=_registry())
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    if errors:
        raise AssertionError(f"{schema} violations: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5]))
