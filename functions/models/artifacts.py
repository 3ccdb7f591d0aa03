"""Models a tenant can use: the base catalogue plus its own fine-tuned models; deleting one removes its artifacts."""

from __future__ import annotations

from functions.core.errors import InvalidRequest, NotFound
from functions.core.models import FineTunedModel
from functions.core.settings import Settings
from functions.store.blobs import Blobs
from functions.store.mongo import Store


def fine_tuned(store: Store, client_code: str, model_id: str) -> FineTunedModel:
    model = store.models.get(model_id, client_code)
    if model is None:
        raise NotFound(f"model {model_id!r} not found", param="model")
    return model


def delete(store: Store, blobs: Blobs, settings: Settings, client_code: str, model_id: str) -> FineTunedModel:
    if model_id in settings.base_models:
        raise InvalidRequest(f"{model_id!r} is a base model; only fine-tuned models can be deleted", param="model")
    model = fine_tuned(store, client_code, model_id)
    bucket, _, key = model.adapter_uri.removeprefix("s3://").partition("/")
    job_prefix = key.rsplit("adapter/", 1)[0]
    # The adapter and its checkpoints (files and records) go; the job keeps its record, events and metrics.
    blobs.delete_prefix(bucket, key)
    blobs.delete_prefix(bucket, job_prefix + "checkpoints/")
    store.checkpoints.delete_for_job(model.job_id, client_code)  # their files are gone: list none
    store.models.delete(model_id, client_code)
    return model
