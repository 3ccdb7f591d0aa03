"""Seed 002's model registry: with MLFLOW_TRACKING_URI set, the served model is a version of MODEL_NAME in MLflow.

The version is the one holding MODEL_ALIAS when that is set, else the newest in MODEL_STAGE (`Production` by default;
`latest` takes the newest version in any stage). Its artifact is a LoRA adapter (as `ministudio-train` registers it)
and its `base_model` tag names the catalogue base model: the server loads that base and serves MODEL_NAME as base +
adapter (services/adapters.py `serve_as`). `/info` shows the version's registry metadata and its run's metrics.

mlflow is imported only here, inside functions, and only when a tracking URI is set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ministudio_serve.settings import ServeSettings

log = logging.getLogger(__name__)


class RegistryError(RuntimeError):
    """The registry cannot give this server a model; the message uses the seed's troubleshooting wording."""


@dataclass(frozen=True)
class RegisteredModel:
    tracking_uri: str
    name: str
    version: str
    stage: str
    aliases: tuple[str, ...]
    selected_by: dict[str, str]
    run_id: str | None
    base_model: str
    source: str
    adapter_dir: Path
    created_at: str | None = None
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        """What `/info` shows: seed 002's "model metadata from MLflow"."""
        return {
            "source": "mlflow",
            "tracking_uri": self.tracking_uri,
            "name": self.name,
            "version": self.version,
            "stage": self.stage,
            "aliases": list(self.aliases),
            "selected_by": self.selected_by,
            "run_id": self.run_id,
            "base_model": self.base_model,
            "artifact_uri": self.source,
            "created_at": self.created_at,
            "description": self.description,
            "tags": self.tags,
            "metrics": self.metrics,
            "params": self.params,
        }


def fetch(settings: ServeSettings) -> RegisteredModel:
    """Pick the version, download its adapter (cached by version), and read its run. Blocking: run it in a thread."""
    assert settings.mlflow_tracking_uri
    from mlflow.exceptions import MlflowException

    try:
        return _fetch(settings, settings.mlflow_tracking_uri)
    except RegistryError:
        raise
    except MlflowException as exc:
        raise RegistryError(_explain(settings.mlflow_tracking_uri, settings.model, exc)) from exc
    except OSError as exc:  # requests' ConnectionError is an OSError
        raise RegistryError(f"Connection refused to MLflow server {settings.mlflow_tracking_uri}: {exc}") from exc


def _explain(uri: str, name: str, exc: Any) -> str:
    text = str(exc)
    if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
        return f"Model not found in MLflow registry: {name!r} ({text[:300]})"
    if "Connection refused" in text or "Max retries exceeded" in text:
        return f"Connection refused to MLflow server {uri}: {text[:300]}"
    return f"MLflow registry error for {name!r}: {text[:500]}"


def _fetch(settings: ServeSettings, uri: str) -> RegisteredModel:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = settings.model
    if settings.model_alias:
        try:
            chosen = client.get_model_version_by_alias(name, settings.model_alias)
        except MlflowException as exc:  # an unknown alias is INVALID_PARAMETER_VALUE, not RESOURCE_DOES_NOT_EXIST
            if exc.error_code not in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
                raise
            raise RegistryError(
                f"Model not found in MLflow registry: no version of {name!r} holds alias {settings.model_alias!r}"
            ) from exc
        selected = {"alias": settings.model_alias}
    else:
        chosen = _by_stage(client, name, settings.model_stage)
        selected = {"stage": settings.model_stage}
    version = client.get_model_version(name, chosen.version)  # search results leave aliases out
    adapter_dir = _download(client, uri, name, str(version.version), settings.adapter_cache)
    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    if version.run_id:
        try:
            run = client.get_run(version.run_id)
            metrics, params = dict(run.data.metrics), dict(run.data.params)
        except Exception as exc:  # a deleted run: the version still serves, /info just lacks its numbers
            log.warning("run %s of %s/%s unreadable: %s", version.run_id, name, version.version, exc)
    tags = dict(version.tags or {})
    base = tags.get("base_model") or params.get("base_model") or _adapter_base(adapter_dir)
    if not base:
        raise RegistryError(
            f"{name} version {version.version} names no base model: tag it base_model=<catalogue model id>"
        )
    created = version.creation_timestamp
    return RegisteredModel(
        tracking_uri=uri,
        name=name,
        version=str(version.version),
        stage=version.current_stage or "None",
        aliases=tuple(version.aliases or ()),
        selected_by=selected,
        run_id=version.run_id or None,
        base_model=base,
        source=str(version.source),
        adapter_dir=adapter_dir,
        created_at=datetime.fromtimestamp(created / 1000, UTC).isoformat().replace("+00:00", "Z") if created else None,
        description=version.description or None,
        tags=tags,
        metrics=metrics,
        params=params,
    )


def _by_stage(client: Any, name: str, stage: str) -> Any:
    if "'" in name:
        raise RegistryError(f"Model not found in MLflow registry: {name!r} is not a valid model name")
    versions = client.search_model_versions(f"name='{name}'")
    if stage.lower() != "latest":
        versions = [v for v in versions if (v.current_stage or "").lower() == stage.lower()]
    if not versions:
        where = "" if stage.lower() == "latest" else f" in stage {stage!r}"
        raise RegistryError(f"Model not found in MLflow registry: no version of {name!r}{where}")
    return max(versions, key=lambda v: int(v.version))


def _download(client: Any, uri: str, name: str, version: str, cache: Path | None) -> Path:
    """The version's adapter files, downloaded once (a registered version's source never changes), atomically."""
    import mlflow

    root = (cache or Path(tempfile.gettempdir()) / "ministudio-adapters") / "mlflow"
    dest = root / hashlib.sha256(f"{uri}|{name}|{version}".encode()).hexdigest()[:16]
    if (dest / "adapter_config.json").is_file():
        return dest
    source = client.get_model_version_download_uri(name, version)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".download-"))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staging), tracking_uri=uri))
        found = [p.parent for p in sorted(local.rglob("adapter_config.json"))]
        if not found:
            raise RegistryError(f"{name} version {version} at {source} holds no LoRA adapter (adapter_config.json)")
        if not dest.exists():  # another process may have finished the same download meanwhile
            os.replace(found[0], dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("downloaded %s version %s from %s", name, version, source)
    return dest


def _adapter_base(adapter_dir: Path) -> str | None:
    try:
        base = json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return str(base) if base else None
