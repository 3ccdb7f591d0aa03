"""The job spec: where it comes from (file, JSON string, env, SageMaker's /opt/ml) and what its fields mean.

The fields, their defaults and their validation are the control plane's own (`ministudio_common.spec.TrainingSpec`:
what it sends is what is read here). This module only merges the sources. Precedence, lowest first: SageMaker's
hyperparameters.json, then the first of `--spec`, `--spec-json`, `$MINISTUDIO_JOB_SPEC`; SageMaker channels (already
downloaded by SageMaker) replace the data files; individual CLI flags override everything. Hyperparameter values
may be strings (SageMaker stores them so) and are checked in `hyper.py`.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ministudio_common.spec import FIELDS, TrainingSpec
from pydantic import ValidationError

from ministudio_train.errors import TrainError
from ministudio_train.hyper import HYPERPARAMETERS

SPEC_ENV = "MINISTUDIO_JOB_SPEC"
SAGEMAKER_ROOT_ENV = "MINISTUDIO_SAGEMAKER_ROOT"  # tests point this at a temporary /opt/ml
LOCAL_JOB_ID = "ftjob-local"  # a spec run by hand may name no job
_TOP_LEVEL = tuple(name for name in FIELDS if name != "hyperparameters")


class JobSpec(TrainingSpec):
    """The shared spec plus what only SageMaker says: where it picks up the model, syncs checkpoints and reads a
    failure reason. These never travel in a spec: `load_spec` sets them from /opt/ml."""

    model_dir: str | None = None
    checkpoint_dir: str | None = None
    failure_file: str | None = None


class SpecUnusable(Exception):
    """The spec cannot be read or names no output: nothing can be written, the CLI exits 2."""


def _parse_json(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecUnusable(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecUnusable(f"{source} must hold a JSON object")
    return data


def _sm_value(text: Any) -> Any:
    # SageMaker keeps every hyperparameter as a string: "4", "0.01", "auto", "null".
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _flatten_method(raw: dict[str, Any]) -> dict[str, Any]:
    """Accept OpenAI's `method: {type: supervised, supervised: {hyperparameters}}` as well as flat hyperparameters."""
    hyper = dict(raw.get("hyperparameters") or {})
    method = raw.get("method")
    if isinstance(method, dict):
        nested = (method.get(method.get("type") or "supervised") or {}).get("hyperparameters") or {}
        hyper = {**nested, **hyper}
    return hyper


def sagemaker_root(environ: Mapping[str, str]) -> Path:
    return Path(environ.get(SAGEMAKER_ROOT_ENV, "/opt/ml"))


def _sagemaker(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (spec fields, SageMaker-only fields) from /opt/ml and SM_* variables; empty outside SageMaker."""
    root = sagemaker_root(environ)
    hp_file = root / "input" / "config" / "hyperparameters.json"
    in_sagemaker = hp_file.is_file() or "SM_CHANNEL_TRAINING" in environ or "SM_MODEL_DIR" in environ
    if not in_sagemaker:
        return {}, {}
    spec: dict[str, Any] = {"hyperparameters": {}}
    if hp_file.is_file():
        flat = _parse_json(hp_file.read_text(), str(hp_file))
        if "job_spec" in flat:  # a whole spec passed as one string hyperparameter
            spec.update(_parse_json(str(flat.pop("job_spec")), "hyperparameter job_spec"))
        for key, value in flat.items():
            if key.startswith("sagemaker_"):  # the SageMaker SDK adds its own entries
                continue
            target = spec if key in _TOP_LEVEL else spec["hyperparameters"]
            target[key] = _sm_value(value)
    # The sagemaker-training toolkit sets SM_*; without it SageMaker still mounts channels at the usual paths.
    for channel, key in (("training", "training_file"), ("validation", "validation_file")):
        path = environ.get(f"SM_CHANNEL_{channel.upper()}") or str(root / "input" / "data" / channel)
        if Path(path).is_dir() and any(Path(path).iterdir()):
            spec[key] = path
    extra = {
        "model_dir": environ.get("SM_MODEL_DIR") or str(root / "model"),
        "checkpoint_dir": str(root / "checkpoints"),
        "failure_file": str(root / "output" / "failure"),
    }
    return spec, extra


def _explicit(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    if args.spec:
        try:
            text = Path(args.spec).read_text()
        except OSError as exc:
            raise SpecUnusable(f"cannot read --spec {args.spec}: {exc}") from exc
        return _parse_json(text, f"--spec {args.spec}")
    if args.spec_json:
        return _parse_json(args.spec_json, "--spec-json")
    if environ.get(SPEC_ENV):
        return _parse_json(environ[SPEC_ENV], f"${SPEC_ENV}")
    return {}


def load_spec(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> JobSpec:
    environ = os.environ if environ is None else environ
    sm_spec, sm_extra = _sagemaker(environ)
    explicit = _explicit(args, environ)
    merged: dict[str, Any] = {**{k: v for k, v in sm_spec.items() if k != "hyperparameters"}, **explicit}
    merged["hyperparameters"] = {**sm_spec.get("hyperparameters", {}), **_flatten_method(explicit)}
    for key in ("training_file", "validation_file"):
        if key in sm_spec:  # SageMaker has already downloaded the channel: read the local copy
            merged[key] = sm_spec[key]
    for key in _TOP_LEVEL:
        value = getattr(args, key, None)
        if value is not None:
            merged[key] = value
    for key in HYPERPARAMETERS:
        value = getattr(args, key, None)
        if value is not None:
            merged["hyperparameters"][key] = value
    if not merged.get("output") and sm_extra:
        merged["output"] = sm_extra["model_dir"]
    if not merged.get("output"):
        raise SpecUnusable("the job spec names no output (an s3:// prefix or a local directory)")
    unknown = sorted(set(merged) - set(FIELDS) - {"method"})
    if unknown:
        raise TrainError("invalid_job_spec", f"unknown job spec field(s): {', '.join(unknown)}", unknown[0])
    fields = {k: v for k, v in merged.items() if k in FIELDS and v is not None}  # null means unset
    fields.setdefault("job_id", LOCAL_JOB_ID)
    for key in ("model", "training_file"):
        if not fields.get(key):
            raise TrainError("invalid_job_spec", f"the job spec names no {key}", key)
    try:
        return JobSpec.model_validate({**fields, **sm_extra})
    except ValidationError as exc:
        first = exc.errors()[0]
        param = str(first["loc"][0]) if first["loc"] else None
        raise TrainError("invalid_job_spec", f"{param or 'job spec'}: {first['msg']}", param) from exc


def output_hint(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> str | None:
    """Best-effort output location for reporting a spec that failed to load (None when there is none)."""
    environ = os.environ if environ is None else environ
    if getattr(args, "output", None):
        return str(args.output)
    try:
        explicit = _explicit(args, environ)
    except SpecUnusable:
        explicit = {}
    if explicit.get("output"):
        return str(explicit["output"])
    try:
        sm_spec, sm_extra = _sagemaker(environ)
    except SpecUnusable:
        return None
    return str(sm_spec.get("output") or sm_extra.get("model_dir") or "") or None
