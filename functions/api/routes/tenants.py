"""Admin routes: tenants and their API keys (admin key only: the router's dependency checks it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from functions.api.deps import Admin, ClientsDep
from functions.api.schemas import (
    OPENAI_ERRORS,
    PROXY_ERRORS,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    ListPage,
    TenantCreate,
    TenantOut,
    TenantUpdate,
)
from functions.core.models import ApiKey, Tenant
from functions.tenants import service

router = APIRouter(prefix="/v1/tenants", tags=["tenants"], dependencies=[Admin], responses=OPENAI_ERRORS)
# 503: a revoke or config change that Redis could not make take effect (nothing changed; retry)
CACHE_DOWN: dict[int | str, dict[str, Any]] = {503: PROXY_ERRORS[503]}


def _tenant(t: Tenant) -> TenantOut:
    return TenantOut(id=t.id, client_code=t.id, status=t.status, created_at=t.created_at, config=t.config)


def _key(k: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(**k.model_dump(exclude={"key_hash"}))


@router.post("", status_code=201)
def create_tenant(body: TenantCreate, clients: ClientsDep) -> TenantOut:
    return _tenant(service.create_tenant(clients.store, body.client_code, body.config))


@router.get("")
def list_tenants(clients: ClientsDep) -> ListPage[TenantOut]:
    return ListPage[TenantOut].of([_tenant(t) for t in service.list_tenants(clients.store)])


@router.get("/{client_code}")
def get_tenant(client_code: str, clients: ClientsDep) -> TenantOut:
    return _tenant(service.require_tenant(clients.store, client_code))


@router.patch("/{client_code}", responses=CACHE_DOWN)
def update_tenant(client_code: str, body: TenantUpdate, clients: ClientsDep) -> TenantOut:
    return _tenant(service.update_config(clients.store, clients.cache, clients.settings, client_code, body.config))


@router.post("/{client_code}/api_keys", status_code=201)
def create_api_key(client_code: str, clients: ClientsDep, body: ApiKeyCreate | None = None) -> ApiKeyCreated:
    record, secret = service.issue_key(clients.store, client_code, body.name if body else None)
    return ApiKeyCreated(**_key(record).model_dump(), key=secret)


@router.get("/{client_code}/api_keys")
def list_api_keys(client_code: str, clients: ClientsDep) -> ListPage[ApiKeyOut]:
    return ListPage[ApiKeyOut].of([_key(k) for k in service.list_keys(clients.store, client_code)])


@router.delete("/{client_code}/api_keys/{key_id}", responses=CACHE_DOWN)
def revoke_api_key(client_code: str, key_id: str, clients: ClientsDep) -> ApiKeyOut:
    return _key(service.revoke_key(clients.store, clients.cache, clients.settings, client_code, key_id))
