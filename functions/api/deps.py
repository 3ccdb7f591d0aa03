"""Dependencies as types: routes declare what they need (`CallerDep`, `ClientsDep`, …); tests override them.

A route takes one dependency, not one per client: each dependency a route declares costs FastAPI an analysis when
the route is built (cold start) and a step per request. `CallerDep` is the authenticated tenant with the process's
clients (`caller.store`, `caller.queues`, …); `ClientsDep` the clients alone (admin and open routes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from functions.api.context import tenant_var
from functions.compute.base import TrainingBackend
from functions.compute.serving import ServingBackend
from functions.core import model_kinds
from functions.core.errors import NotFound
from functions.core.models import Tenant
from functions.core.settings import Settings, get_settings
from functions.deployments.route_cache import NOT_READ, Prefetched, route_key
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


SettingsDep = Annotated[Settings, Depends(_settings)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is not None:
        return credentials.credentials
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def _authenticated(
    request: Request, credentials: HTTPAuthorizationCredentials | None, store: Store, cache: Cache, settings: Settings
) -> Tenant:
    # One Redis round trip for a key seen before: the key, its tenant and the rate-limit hit together.
    tenant = service.authenticate_and_limit(store, cache, settings, _token(request, credentials))
    tenant_var.set(tenant.client_code)
    return tenant


def require_admin(request: Request, credentials: Credentials, settings: SettingsDep) -> None:
    admin = settings.admin_api_key.get_secret_value() if settings.admin_api_key else _admin_from_secrets(settings)
    service.authenticate_admin(admin, _token(request, credentials))


def _admin_from_secrets(settings: Settings) -> str | None:
    if not settings.admin_api_key_secret_arn:
        return None
    # Read per request through the secrets cache (SECRETS_MAX_AGE_SECONDS): a rotated key takes effect without a
    # redeploy, once the cached copy is that old.
    return settings.secret(settings.admin_api_key_secret_arn)


Admin = Depends(require_admin)


def own_client_code(tenant: Tenant, client_code: str | None) -> str:
    """A client_code in a path or body must be the caller's (else 404, never 403); empty means the caller's."""
    if client_code and client_code != tenant.client_code:
        raise NotFound(f"tenant {client_code!r} not found", param="client_code")
    return tenant.client_code


class Clients:
    """The process's settings and clients, each made on first use (they are process singletons)."""

    @property
    def settings(self) -> Settings:
        return get_settings()

    @property
    def store(self) -> Store:
        return get_store()

    @property
    def cache(self) -> Cache:
        return get_cache()

    @property
    def blobs(self) -> Blobs:
        return get_blobs()

    @property
    def queues(self) -> Queues:
        return get_queues()

    @property
    def training(self) -> TrainingBackend:
        from functions.compute import get_training_backend

        return get_training_backend(self.settings)

    @property
    def serving(self) -> ServingBackend:
        from functions.compute import get_serving_backend

        return get_serving_backend(self.settings)


class Caller(Clients):
    """A request from an authenticated tenant (rate limit already counted), and what serving it may need."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant

    @property
    def client_code(self) -> str:
        return self.tenant.client_code

    def own(self, client_code: str | None) -> str:
        """A client_code in a seed route's path or body: the caller's own, else 404 (see `own_client_code`)."""
        return own_client_code(self.tenant, client_code)


_CLIENTS = Clients()


async def clients() -> Clients:
    return _CLIENTS


async def caller(request: Request, credentials: Credentials) -> Caller:
    """Inline on the event loop, like `current_tenant`."""
    return Caller(_authenticated(request, credentials, get_store(), get_cache(), get_settings()))


class ProxyCaller(Caller):
    """A caller of a proxy route, with the route cache entry of the model it asked for when that was read ahead."""

    def __init__(self, tenant: Tenant, model: str | None = None, route: Prefetched = NOT_READ) -> None:
        super().__init__(tenant)
        self._read = (model, route)

    def route_entry(self, model: str) -> Prefetched:
        """The route cache entry of `model` as read with the key, or NOT_READ (another model, or not read)."""
        read_for, entry = self._read
        return entry if read_for == model else NOT_READ


async def proxy_caller(request: Request, credentials: Credentials) -> ProxyCaller:
    """`caller` for the proxy routes: for a key seen before, one Redis round trip reads the key, its tenant, the
    rate-limit hit and the route cache entry of the model asked for (the path's `model_name`, else the JSON body's
    `model`, which FastAPI has parsed already and Starlette keeps)."""
    model = await _model_asked(request)
    also = None if model is None else (lambda code: [route_key(code, model)])
    bearer = _token(request, credentials)
    tenant, read = service.authenticate_limit_and_read(get_store(), get_cache(), get_settings(), bearer, also)
    tenant_var.set(tenant.client_code)
    return ProxyCaller(tenant, model, read[0]) if read else ProxyCaller(tenant)


async def _model_asked(request: Request) -> str | None:
    name = request.path_params.get("model_name")
    if isinstance(name, str):
        return name
    try:
        body = await request.json()
    except ValueError:  # not JSON: the route answers its 4xx
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model_kinds.canonical(model) if isinstance(model, str) else None


ClientsDep = Annotated[Clients, Depends(clients)]
CallerDep = Annotated[Caller, Depends(caller)]
ProxyCallerDep = Annotated[ProxyCaller, Depends(proxy_caller)]
