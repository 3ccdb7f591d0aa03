"""A version's feature schema, and the pydantic model generated from it that validates `input_data`.

Field names are positional (`f0`, `f1`, ...) with the feature's name as alias, so any feature name works (scikit-learn's
datasets use names such as "mean radius"); errors name the feature. Types are strict: a string is never a number,
a bool never a float, and NaN/inf are refused, so the canonical input (the cache key) is one value per meaning.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, create_model, field_validator

FeatureType = Literal["float", "int", "bool"]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED_VERSIONS = frozenset({"latest", "active", "versions"})

_PYTHON_TYPES: dict[str, Any] = {
    "float": Annotated[float, Field(strict=True, allow_inf_nan=False)],
    "int": StrictInt,
    "bool": StrictBool,
}


class Feature(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    type: FeatureType = "float"


class FeatureSchema(BaseModel):
    features: list[Feature] = Field(min_length=1, max_length=4096)

    @field_validator("features")
    @classmethod
    def _unique(cls, features: list[Feature]) -> list[Feature]:
        seen: set[str] = set()
        for feature in features:
            if feature.name in seen:
                raise ValueError(f"feature {feature.name!r} is listed twice")
            seen.add(feature.name)
        return features


class InputInvalid(Exception):
    """`input_data` does not match the schema; `errors` name each feature and what is wrong with it."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"input_data.{first['field']}: {first['message']}{more}")
        self.errors = errors


@lru_cache(maxsize=256)
def input_model(title: str, schema_json: str) -> type[BaseModel]:
    """The pydantic model of one schema (cached: a version's schema never changes)."""
    features = [Feature.model_validate(f) for f in json.loads(schema_json)]
    fields: dict[str, Any] = {
        f"f{i}": (_PYTHON_TYPES[feature.type], Field(alias=feature.name)) for i, feature in enumerate(features)
    }
    config = ConfigDict(extra="forbid", populate_by_name=False, title=title)
    model: type[BaseModel] = create_model(f"Input_{title}", __config__=config, **fields)
    return model


def validate_input(title: str, features: list[Feature], data: dict[str, Any]) -> list[float]:
    """Feature values in schema order, as floats; raises InputInvalid naming every bad or missing feature."""
    schema_json = json.dumps([f.model_dump() for f in features], separators=(",", ":"))
    model = input_model(title, schema_json)
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise InputInvalid(_errors(exc)) from exc
    return [float(getattr(parsed, f"f{i}")) for i in range(len(features))]


def canonical_digest(values: list[float]) -> str:
    """One digest per input meaning: the schema's order, floats (1 and 1.0 agree), no whitespace."""
    return hashlib.sha256(json.dumps(values, separators=(",", ":")).encode()).hexdigest()


def _errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "input_data"
        kind = err.get("type", "")
        if kind == "missing":
            message = "missing feature"
        elif kind == "extra_forbidden":
            message = "unknown feature (not in this version's schema)"
        else:
            got = type(err.get("input")).__name__.replace("NoneType", "null")
            message = f"{err.get('msg', 'invalid value')} (got {got})"
        out.append({"field": field, "message": message, "type": str(kind)})
    return out
