"""Seed 002's model registry: with MLFLOW_TRACKING_URI set, a finished run is logged to MLflow (params, the metrics
of every logging step, the adapter) and registered as a new version of MODEL_NAME (`custom-llm` by default).

The registered artifact is the LoRA adapter itself; the version carries the base model's id as its `base_model` tag
(and the run as a param), which is what the inference server needs to serve base + adapter. mlflow is imported only
here, and only when a tracking URI is set. A registry that cannot be reached does not fail the job: the adapter is
already saved, so result.json records the registry error next to a succeeded status.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("ministudio_train")
DEFAULT_MODEL_NAME = "custom-llm"  # seed 002's MODEL_NAME default
DEFAULT_EXPERIMENT = "ministudio"
# Per-step lines of metrics.jsonl become MLflow metric histories under these names.
STEP_METRICS = ("loss", "eval_loss", "learning_rate", "tokens_per_second")
FINAL_METRICS = ("final_loss", "eval_loss", "trained_tokens", "train_seconds", "tokens_per_second", "steps")


@dataclass(frozen=True)
class RegistrySettings:
    tracking_uri: str
    model_name: str = DEFAULT_MODEL_NAME
    experiment: str = DEFAULT_EXPERIMENT
    alias: str | None = None  # set on the new version when given (e.g. `champion`)
    stage: str | None = None  # transition the new version to it when given (e.g. `Production`)

    @classmethod
    def resolve(
        cls, flags: Mapping[str, str | None], environ: Mapping[str, str] | None = None
    ) -> RegistrySettings | None:
        """Flags, else the environment; None when no tracking URI is set (then nothing is logged)."""
        env = os.environ if environ is None else environ

        def pick(flag: str, *names: str) -> str | None:
            value = flags.get(flag)
            return value if value else next((env[n] for n in names if env.get(n)), None)

        uri = pick("mlflow_tracking_uri", "MLFLOW_TRACKING_URI")
        if not uri:
            return None
        return cls(
            tracking_uri=uri,
            model_name=pick("registered_model_name", "REGISTERED_MODEL_NAME", "MODEL_NAME") or DEFAULT_MODEL_NAME,
            experiment=pick("mlflow_experiment", "MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT,
            alias=pick("register_alias", "REGISTER_MODEL_ALIAS"),
            stage=pick("register_stage", "REGISTER_MODEL_STAGE"),
        )


def _ms(seconds: float | None = None) -> int:
    return int((seconds if seconds is not None else time.time()) * 1000)


def _step_metrics(metrics_file: Path, started: float) -> list[Any]:
    from mlflow.entities import Metric

    if not metrics_file.is_file():
        return []
    out = []
    for line in metrics_file.read_text().splitlines():
        row = json.loads(line)
        step = int(row.get("step") or 0)
        for key in STEP_METRICS:
            value = row.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out.append(Metric(key, float(value), _ms(started), step))
    return out


def _params(result: Mapping[str, Any]) -> dict[str, str]:
    params = {f"hp_{k}" if k == "model" else k: v for k, v in (result.get("hyperparameters") or {}).items()}
    for key in ("model", "job_id", "tenant", "suffix", "fine_tuned_model"):
        if result.get(key) is not None:
            params["base_model" if key == "model" else key] = result[key]
    return {k: str(v)[:6000] for k, v in params.items()}


def publish(settings: RegistrySettings, result: Mapping[str, Any], output_root: Path, started: float) -> dict[str, Any]:
    """Log the finished run and register its adapter; what result.json records under `registry`."""
    try:
        return _publish(settings, result, output_root, started)
    except Exception as exc:  # the adapter is saved either way: report, never lose the job
        message = _explain(settings.tracking_uri, exc)
        log.error("MLflow registration failed: %s", message)
        return {"tracking_uri": settings.tracking_uri, "model_name": settings.model_name, "error": message}


def _explain(uri: str, exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if "Connection refused" in text or "Max retries exceeded" in text or isinstance(exc, ConnectionError):
        return f"Connection refused to MLflow server {uri}: {text[:500]}"
    return text[:1000]


def _publish(settings: RegistrySettings, result: Mapping[str, Any], root: Path, started: float) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(settings.experiment)
    base = str(result["model"])
    tags = {"base_model": base, "job_id": str(result.get("job_id")), "mlflow.source.name": "ministudio-train"}
    if result.get("tenant"):
        tags["tenant"] = str(result["tenant"])
    run = client.create_run(experiment_id, start_time=_ms(started), tags=tags, run_name=str(result.get("job_id")))
    run_id = run.info.run_id
    now = _ms()
    finals = [Metric(k, float(result[k]), now, int(result.get("steps") or 0)) for k in FINAL_METRICS
              if isinstance(result.get(k), int | float)]  # fmt: skip
    step_metrics = _step_metrics(root / "metrics.jsonl", started)
    params = [Param(k, v) for k, v in _params(result).items()]
    for i in range(0, max(len(step_metrics), 1), 900):  # the REST API takes at most 1000 metrics per batch
        batch = step_metrics[i : i + 900]
        client.log_batch(run_id, metrics=batch + (finals if i == 0 else []), params=params if i == 0 else [])
    client.log_artifacts(run_id, str(root / "adapter"), "adapter")
    client.set_terminated(run_id, "FINISHED")
    try:
        client.create_registered_model(settings.model_name, description="LoRA adapters fine-tuned by Mini Studio")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(
        settings.model_name,
        source=f"{run.info.artifact_uri}/adapter",
        run_id=run_id,
        tags={**tags, "fine_tuned_model": str(result.get("fine_tuned_model") or "")},
        description=f"LoRA adapter on {base} from {result.get('job_id')}",
    )
    client.log_batch(run_id, tags=[RunTag("registered_model_version", f"{settings.model_name}/{version.version}")])
    if settings.stage:
        client.transition_model_version_stage(settings.model_name, version.version, settings.stage)
    if settings.alias:
        client.set_registered_model_alias(settings.model_name, settings.alias, version.version)
    log.info(
        "registered %s version %s (run %s) in %s", settings.model_name, version.version, run_id, settings.tracking_uri
    )
    return {
        "tracking_uri": settings.tracking_uri,
        "model_name": settings.model_name,
        "version": str(version.version),
        "run_id": run_id,
        "source": version.source,
        "stage": settings.stage,
        "alias": settings.alias,
    }
