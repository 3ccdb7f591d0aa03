"""OpenAI's POST /v1/chat/completions and /v1/completions on the control plane: route `model` to the caller's own
ready deployment and forward (streams included); every call is logged for /v1/usage and /v1/logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from starlette.responses import Response

from functions.api.context import request_id_var
from functions.api.deps import CacheDep, CurrentTenant, ServingDep, SettingsDep, StoreDep
from functions.api.schemas import PROXY_ERRORS
from functions.api.schemas_serving import ChatProxyRequest, CompletionProxyRequest
from functions.deployments import proxy, routing

router = APIRouter(prefix="/v1", tags=["inference"], responses=PROXY_ERRORS)
UserHeader = Annotated[str | None, Header(alias="X-User-ID")]


async def _forward(
    path: str,
    body: ChatProxyRequest | CompletionProxyRequest,
    user: str | None,
    tenant: CurrentTenant,
    store: StoreDep,
    cache: CacheDep,
    backend: ServingDep,
    settings: SettingsDep,
) -> Response:
    route = routing.resolve(store, cache, backend, settings, tenant.client_code, body.model)
    call = proxy.Call(
        client_code=tenant.client_code,
        route=route,
        path=path,
        request_id=request_id_var.get(),
        user=user or body.user,
        stream=bool(body.stream),
    )
    return await proxy.forward(call, body.model_dump(exclude_unset=True), store, settings)


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatProxyRequest,
    tenant: CurrentTenant,
    store: StoreDep,
    cache: CacheDep,
    backend: ServingDep,
    settings: SettingsDep,
    user: UserHeader = None,
) -> Response:
    return await _forward("/v1/chat/completions", body, user, tenant, store, cache, backend, settings)


@router.post("/completions", response_model=None)
async def completions(
    body: CompletionProxyRequest,
    tenant: CurrentTenant,
    store: StoreDep,
    cache: CacheDep,
    backend: ServingDep,
    settings: SettingsDep,
    user: UserHeader = None,
) -> Response:
    return await _forward("/v1/completions", body, user, tenant, store, cache, backend, settings)
