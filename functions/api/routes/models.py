"""OpenAI models: base models from the catalogue and the tenant's fine-tuned models (`ft:...`, ids contain '/')."""

from __future__ import annotations

from fastapi import APIRouter

from functions.api.deps import CallerDep
from functions.api.schemas import OPENAI_ERRORS, ListPage
from functions.api.schemas_jobs import ModelDeleted, ModelOut
from functions.models import service

router = APIRouter(prefix="/v1/models", tags=["models"], responses=OPENAI_ERRORS)


@router.get("")
def list_models(caller: CallerDep) -> ListPage[ModelOut]:
    cards = service.list_models(caller.store, caller.settings, caller.client_code)
    return ListPage[ModelOut].of([ModelOut.of(m) for m in cards])


@router.get("/{model:path}")
def retrieve_model(model: str, caller: CallerDep) -> ModelOut:
    return ModelOut.of(service.retrieve(caller.store, caller.settings, caller.client_code, model))


@router.delete("/{model:path}")
def delete_model(model: str, caller: CallerDep) -> ModelDeleted:
    deleted = service.delete(
        caller.store, caller.cache, caller.blobs, caller.queues, caller.settings, caller.client_code, model
    )
    return ModelDeleted(id=deleted.id, deleted=True)
