"""Seed 001's `fine_tuned_weights_path` → one of the caller's fine-tuned models.

Adapters live in S3 (DESIGN.md), not on a PVC: the path may be the model's `ft:` id, the job id that trained it, or
where its adapter is (an s3:// URI or an `artifacts/{tenant}/{job_id}/...` key). `base_model` must name the model's
base, by full id or its last path segment (`SmolLM2-135M-Instruct`).
"""

from __future__ import annotations

from functions.core import names
from functions.core.errors import InvalidRequest, NotFound
from functions.core.models import FineTunedModel
from functions.store.mongo import Store


def resolve_weights(store: Store, client_code: str, base_model: str, path: str) -> FineTunedModel:
    path = path.strip()
    if not path:
        raise InvalidRequest("fine_tuned_weights_path is empty", param="fine_tuned_weights_path")
    model = _find(store, client_code, path)
    if model is None:
        raise NotFound(
            f"fine_tuned_weights_path {path!r} names no fine-tuned model of yours: give its ft: id, the job id, "
            "or its adapter's s3:// URI (adapters live in S3, not on a volume)",
            param="fine_tuned_weights_path",
        )
    short = model.base_model.rsplit("/", 1)[-1]
    if base_model and base_model not in (model.base_model, short):
        raise InvalidRequest(
            f"base_model {base_model!r} does not match the fine-tuned model's base {model.base_model!r}",
            param="base_model",
        )
    return model


def _find(store: Store, client_code: str, path: str) -> FineTunedModel | None:
    if path.startswith("ft:"):
        return store.models.get(path, client_code)
    mine = store.models.list(client_code)
    if path.startswith("ftjob-"):
        return next((m for m in mine if m.job_id == path), None)
    key = path.removeprefix("s3://").split("/", 1)[1] if path.startswith("s3://") else path.lstrip("/")
    if not key.startswith(f"{names.ARTIFACTS_PREFIX}{client_code}/"):
        return None  # another tenant's prefix, a local path, or nothing we wrote
    for model in mine:
        adapter_key = model.adapter_uri.removeprefix("s3://").split("/", 1)[-1]
        job_prefix = f"{names.ARTIFACTS_PREFIX}{client_code}/{model.job_id}/"
        if key.rstrip("/") in (adapter_key.rstrip("/"), job_prefix.rstrip("/")):
            return model
    return None
