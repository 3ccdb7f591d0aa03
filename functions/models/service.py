"""The models a tenant sees at /v1/models: the base catalogue and its own fine-tuned models; deleting a fine-tuned
model removes its artifacts and undeploys it."""

from __future__ import annotations

from dataclasses import dataclass

from functions.core import catalogue
from functions.core.model_kinds import EMBEDDING_ALIASES, EMBEDDING_MODEL, canonical
from functions.core.models import FineTunedModel
from functions.core.settings import Settings
from functions.deployments import service as deployments
from functions.models import artifacts
from functions.store.blobs import Blobs
from functions.store.cache import Cache
from functions.store.mongo import Store
from functions.store.queues import Queues


@dataclass(frozen=True)
class ModelCard:
    id: str
    created: int
    owned_by: str


def _base(model_id: str) -> ModelCard:
    return ModelCard(model_id, catalogue.created(model_id), catalogue.OWNER)


def _fine_tuned(model: FineTunedModel) -> ModelCard:
    return ModelCard(model.id, model.created_at, model.client_code)


def list_models(store: Store, settings: Settings, client_code: str) -> list[ModelCard]:
    """Base models first (in the catalogue's order), the embedding model (`/v1/embeddings`), then the tenant's
    fine-tuned models, oldest first."""
    served = [*settings.base_models, EMBEDDING_MODEL]
    return [_base(m) for m in served] + [_fine_tuned(m) for m in store.models.list(client_code)]


def retrieve(store: Store, settings: Settings, client_code: str, model_id: str) -> ModelCard:
    if model_id in settings.base_models or model_id in EMBEDDING_ALIASES:
        return _base(canonical(model_id))
    return _fine_tuned(artifacts.fine_tuned(store, client_code, model_id))


def delete(
    store: Store, cache: Cache, blobs: Blobs, queues: Queues, settings: Settings, client_code: str, model_id: str
) -> FineTunedModel:
    deleted = artifacts.delete(store, blobs, settings, client_code, model_id)
    deployments.undeploy_model(store, cache, queues, client_code, deleted.id)  # its adapter is gone
    return deleted
