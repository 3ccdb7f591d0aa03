"""OpenAI models: base models from the catalogue and the tenant's fine-tuned models (`ft:...`, ids contain '/')."""

from __future__ import annotations

from fastapi import APIRouter

from functions.api.deps import BlobsDep, CacheDep, CurrentTenant, QueuesDep, SettingsDep, StoreDep
from functions.api.schemas import OPENAI_ERRORS
from functions.api.schemas_jobs import ModelDeleted, ModelList, ModelOut
from functions.core import catalogue
from functions.deployments import service as deployments
from functions.jobs import models

router = APIRouter(prefix="/v1/models", tags=["models"], responses=OPENAI_ERRORS)


@router.get("", response_model=ModelList)
def list_models(tenant: CurrentTenant, store: StoreDep, settings: SettingsDep) -> ModelList:
    base = [ModelOut(id=m, created=catalogue.created(m), owned_by=catalogue.OWNER) for m in settings.base_models]
    return ModelList(data=base + [ModelOut.of_fine_tuned(m) for m in store.models.list(tenant.client_code)])


@router.get("/{model:path}", response_model=ModelOut)
def retrieve_model(model: str, tenant: CurrentTenant, store: StoreDep, settings: SettingsDep) -> ModelOut:
    if model in settings.base_models:
        return ModelOut(id=model, created=catalogue.created(model), owned_by=catalogue.OWNER)
    return ModelOut.of_fine_tuned(models.fine_tuned(store, tenant.client_code, model))


@router.delete("/{model:path}", response_model=ModelDeleted)
def delete_model(
    model: str,
    tenant: CurrentTenant,
    store: StoreDep,
    blobs: BlobsDep,
    queues: QueuesDep,
    cache: CacheDep,
    settings: SettingsDep,
) -> ModelDeleted:
    deleted = models.delete(store, blobs, settings, tenant.client_code, model)
    deployments.undeploy_model(store, queues, cache, tenant.client_code, deleted.id)  # its adapter is gone
    return ModelDeleted(id=deleted.id, deleted=True)
