"""compose.yaml is a valid Compose file (the Compose Specification's own JSON schema, vendored in tests/fixtures)
whose mounts exist, and .env.example lists every setting of the control plane and of the inference server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from functions.core.settings import Settings
from tests.helpers.monitoring import REPO_ROOT

COMPOSE_SCHEMA = REPO_ROOT / "tests" / "fixtures" / "compose-spec" / "compose-spec.json"
_ASSIGNMENT = re.compile(r"^#?\s*([A-Za-z_][A-Za-z0-9_]*)=", re.MULTILINE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    return loaded


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    errors = sorted(Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_schema_rejects_what_compose_would(compose: dict[str, Any]) -> None:
    # The check above can fail: a misspelt key is refused
    broken = {**compose, "services": {**compose["services"], "redis": {**compose["services"]["redis"], "prots": []}}}
    assert not Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text())).is_valid(broken)


def test_compose_runs_the_four_services_from_this_repository(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"inference", "inference-cpu", "tabular", "redis", "prometheus", "grafana"}
    assert services["inference"]["build"]["dockerfile"] == "containers/inference/Dockerfile"
    assert services["inference"]["profiles"] == ["gpu"]  # plain `docker compose up` needs no GPU
    assert services["inference-cpu"]["build"]["dockerfile"] == "containers/inference/Dockerfile.cpu"
    assert services["tabular"]["command"] == ["--profile", "tabular"]
    for name in ("inference", "inference-cpu", "tabular"):
        assert (REPO_ROOT / services[name]["build"]["dockerfile"]).is_file()
        assert services[name]["environment"]["API_PORT"] == "8000" and "API_KEY" in services[name]["environment"]
        assert services[name]["ports"][0].endswith(":8000")
    no_gpu = [name for name, service in services.items() if "gpu" not in service.get("profiles", [])]
    assert all(name != "inference" for name in no_gpu)
    for name in no_gpu:  # the default services depend only on default services
        assert set(services[name].get("depends_on", [])) <= set(no_gpu)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"


def test_compose_prometheus_scrapes_the_compose_inference_server() -> None:
    # The shipped config's file_sd glob, read inside the container, finds a target naming the inference service
    config = yaml.safe_load((REPO_ROOT / "monitoring" / "prometheus" / "prometheus.yml").read_text())
    inference = next(job for job in config["scrape_configs"] if job["job_name"] == "inference")
    assert inference["file_sd_configs"][0]["files"] == ["/etc/prometheus/targets/*.json"]
    targets = (REPO_ROOT / "monitoring" / "prometheus" / "targets").glob("*.json")
    groups = [group for path in targets for group in json.loads(path.read_text())]
    assert ["inference-cpu:8000"] in [g["targets"] for g in groups]
    assert ["inference:8000"] in [g["targets"] for g in groups]
    assert all("deployment" in g["labels"] for g in groups)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool comes with the prometheus package")
def test_shipped_prometheus_config_is_valid(tmp_path: Path) -> None:
    result = subprocess.run(
        ["promtool", "check", "config", str(REPO_ROOT / "monitoring" / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_env_example_lists_every_setting() -> None:
    from ministudio_serve.settings import ServeSettings

    listed = set(_ASSIGNMENT.findall((REPO_ROOT / ".env.example").read_text()))
    # The control plane reads each field under its own name, upper-cased (case-insensitive settings)
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in listed]
    # The server reads each field under any of its aliases (case-sensitive): one of them must be listed
    for name, field in ServeSettings.model_fields.items():
        aliases = list(getattr(field.validation_alias, "choices", None) or [field.alias or name])
        if not listed.intersection(str(alias) for alias in aliases):
            missing.append(f"{name} (one of {', '.join(map(str, aliases))})")
    assert not missing, f".env.example does not list: {', '.join(missing)}"


def test_env_example_sets_nothing_by_being_copied() -> None:
    # Copied to .env as it is, it changes no default: every assignment is commented out
    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    assert [line for line in lines if line.strip() and not line.lstrip().startswith("#")] == []
