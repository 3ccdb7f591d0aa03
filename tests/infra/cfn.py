"""Reading synthesized CloudFormation: references between resources, policy statements, nag annotations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def ref(value: Any) -> str | None:
    """The logical id a `Ref` / `Fn::GetAtt` points at (None for anything else)."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


def refs_in(value: Any) -> set[str]:
    """Every logical id referenced anywhere inside a value (joins, nested intrinsics...)."""
    found: set[str] = set()
    if isinstance(value, dict):
        target = ref(value)
        if target:
            found.add(target)
        for item in value.values():
            found |= refs_in(item)
    elif isinstance(value, list):
        for item in value:
            found |= refs_in(item)
    return found


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(logical id, statement) for every statement of every IAM policy, inline role policy and resource policy."""
    for lid, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        documents = [props.get("PolicyDocument"), props.get("AssumeRolePolicyDocument")]
        documents += [p.get("PolicyDocument") for p in props.get("Policies", [])]
        for document in documents:
            if isinstance(document, dict):
                for statement in document.get("Statement", []):
                    yield lid, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def nag_findings(outdir: Path) -> list[str]:
    """AwsSolutions errors and warnings cdk-nag attached to any construct, as `path: message`.

    Stack metadata sits in the manifest or, in newer cloud assemblies, in each stack's `additionalMetadataFile`.
    """
    manifest = json.loads((outdir / "manifest.json").read_text())
    findings = []
    for artifact in manifest.get("artifacts", {}).values():
        metadata = dict(artifact.get("metadata", {}))
        if "additionalMetadataFile" in artifact:
            metadata.update(json.loads((outdir / artifact["additionalMetadataFile"]).read_text()))
        for path, entries in metadata.items():
            for entry in entries:
                data = str(entry.get("data", ""))
                if entry.get("type") in ("aws:cdk:error", "aws:cdk:warning") and data.startswith("AwsSolutions-"):
                    findings.append(f"{path}: {data[:200]}")
    return findings


def function_environment(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    props = template["Resources"][logical_id]["Properties"]
    return dict(props.get("Environment", {}).get("Variables", {}))
