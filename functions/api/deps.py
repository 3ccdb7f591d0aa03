"""Dependencies as types: routes declare what they need (`Tenant_`, `StoreDep`, …); tests override them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from functions.api.context import tenant_var
from functions.compute.base import TrainingBackend
from functions.compute.serving import ServingBackend
from functions.core.errors import NotFound
from functions.core.models import Tenant
from functions.core.settings import Settings, get_settings
from functions.store.blobs import Blobs, get_blobs
from functions.store.cache import Cache, get_cache
from functions.store.mongo import Store, get_store
from functions.store.queues import Queues, get_queues
from functions.tenants import service

_bearer = HTTPBearer(auto_error=False, description="A tenant API key, or the admin key for /v1/tenants")

# `async def` on purpose: FastAPI runs a plain `def` dependency in the thread pool, and a thread hop per dependency
# was most of the inference proxy's overhead (bench/proxy_overhead.py). These only return process singletons.


async def _settings() -> Settings:
    return get_settings()


async def _store() -> Store:
    return get_store()


async def _cache() -> Cache:
    return get_cache()


async def _blobs() -> Blobs:
    return get_blobs()


async def _queues() -> Queues:
    return get_queues()


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[Store, Depends(_store)]
CacheDep = Annotated[Cache, Depends(_cache)]
BlobsDep = Annotated[Blobs, Depends(_blobs)]
QueuesDep = Annotated[Queues, Depends(_queues)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is not None:
        return credentials.credentials
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


async def current_tenant(
    request: Request, credentials: Credentials, store: StoreDep, cache: CacheDep, settings: SettingsDep
) -> Tenant:
    """Inline on the event loop: a Redis hit (or a MongoDB read on a miss) costs less than a thread-pool hop."""
    tenant = service.authenticate(store, cache, settings, _token(request, credentials))
    tenant_var.set(tenant.client_code)
    service.check_rate_limit(cache, settings, tenant)
    return tenant


def require_admin(request: Request, credentials: Credentials, settings: SettingsDep) -> None:
    admin = settings.admin_api_key.get_secret_value() if settings.admin_api_key else _admin_from_secrets(settings)
    service.authenticate_admin(admin, _token(request, credentials))


def _admin_from_secrets(settings: Settings) -> str | None:
    if not settings.admin_api_key_secret_arn:
        return None
    from aws_lambda_powertools.utilities import parameters

    # Cached for 5 minutes per container: a rotated key takes effect without a redeploy.
    return str(parameters.get_secret(settings.admin_api_key_secret_arn, max_age=300))


async def training_backend(settings: SettingsDep) -> TrainingBackend:
    from functions.compute import get_training_backend

    return get_training_backend(settings)


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
BackendDep = Annotated[TrainingBackend, Depends(training_backend)]
Admin = Depends(require_admin)


def own_client_code(tenant: Tenant, client_code: str | None) -> str:
    """A client_code in a path or body must be the caller's (else 404, never 403); empty means the caller's."""
    if client_code and client_code != tenant.client_code:
        raise NotFound(f"tenant {client_code!r} not found", param="client_code")
    return tenant.client_code


async def serving_backend(settings: SettingsDep) -> ServingBackend:
    from functions.compute import get_serving_backend

    return get_serving_backend(settings)


ServingDep = Annotated[ServingBackend, Depends(serving_backend)]
