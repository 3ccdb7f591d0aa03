"""Admin routes: tenants and their API keys (admin key only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from functions.api.deps import Admin, CacheDep, SettingsDep, StoreDep
from functions.api.schemas import (
    OPENAI_ERRORS,
    PROXY_ERRORS,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyOut,
    TenantCreate,
    TenantList,
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


@router.post("", status_code=201, response_model=TenantOut)
def create_tenant(body: TenantCreate, store: StoreDep) -> TenantOut:
    return _tenant(service.create_tenant(store, body.client_code, body.config))


@router.get("", response_model=TenantList)
def list_tenants(store: StoreDep) -> TenantList:
    return TenantList(data=[_tenant(t) for t in store.tenants.list()])


@router.get("/{client_code}", response_model=TenantOut)
def get_tenant(client_code: str, store: StoreDep) -> TenantOut:
    return _tenant(service.require_tenant(store, client_code))


@router.patch("/{client_code}", response_model=TenantOut, responses=CACHE_DOWN)
def update_tenant(
    client_code: str, body: TenantUpdate, store: StoreDep, cache: CacheDep, settings: SettingsDep
) -> TenantOut:
    return _tenant(service.update_config(store, cache, settings, client_code, body.config))


@router.post("/{client_code}/api_keys", status_code=201, response_model=ApiKeyCreated)
def create_api_key(client_code: str, store: StoreDep, body: ApiKeyCreate | None = None) -> ApiKeyCreated:
    record, secret = service.issue_key(store, client_code, body.name if body else None)
    return ApiKeyCreated(**_key(record).model_dump(), key=secret)


@router.get("/{client_code}/api_keys", response_model=ApiKeyList)
def list_api_keys(client_code: str, store: StoreDep) -> ApiKeyList:
    service.require_tenant(store, client_code)
    return ApiKeyList(data=[_key(k) for k in store.api_keys.list(client_code)])


@router.delete("/{client_code}/api_keys/{key_id}", response_model=ApiKeyOut, responses=CACHE_DOWN)
def revoke_api_key(client_code: str, key_id: str, store: StoreDep, cache: CacheDep, settings: SettingsDep) -> ApiKeyOut:
    return _key(service.revoke_key(store, cache, settings, client_code, key_id))
