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


@lru_cache(maxsize=1)
def _registry() -> Registry:
    spec = yaml.safe_load(SPEC.read_text())
    return Registry().with_resource(URI, Resource.from_contents(spec, default_specification=DRAFT202012))


def assert_openai(schema: str, body: Any) -> None:
    """Raise if body does not satisfy components/schemas/<schema> of the official spec."""
    validator = jsonschema.Draft202012Validator({"$ref": f"{URI}#/components/schemas/{schema}"}, registry=_registry())
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    if errors:
        raise AssertionError(f"{schema} violations: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5]))
