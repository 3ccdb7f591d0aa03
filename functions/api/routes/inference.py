"""OpenAI's POST /v1/chat/completions, /v1/completions and /v1/embeddings on the control plane: route `model` to the
caller's own ready deployment and forward (streams included); every call is logged for /v1/usage and /v1/logs.
Embeddings go to the caller's deployment of the embedding model (an `llm` server, which serves it next to its LLM).

Every answer of a proxy route says how long the control plane itself took: `x-ministudio-overhead-duration-ms`,
from the route's start (body parsing, auth, rate limit, routing included; the ASGI middleware before it not) to
the answer, less the time spent waiting on the inference server (for a stream: until its response headers).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from functions.api import errors
from functions.api.context import request_id_var
from functions.api.deps import ProxyCaller, ProxyCallerDep
from functions.api.schemas import PROXY_ERRORS
from functions.api.schemas_serving import ChatProxyRequest, CompletionProxyRequest, EmbeddingProxyRequest
from functions.core import model_kinds
from functions.core.errors import DomainError
from functions.deployments import proxy, routing


class ProxyRoute(APIRoute):
    """A route whose answers (errors included) carry the control plane's overhead (proxy.OVERHEAD_HEADER)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def timed(request: Request) -> Response:
            timing = proxy.Timing()
            token = proxy.timing_var.set(timing)
            try:
                response = await handle(request)
            except DomainError as exc:  # shaped here, as the app's handler would, so that it carries the header too
                response = await errors.on_domain_error(request, exc)
            finally:
                proxy.timing_var.reset(token)
            response.headers[proxy.OVERHEAD_HEADER] = f"{timing.overhead_ms():.3f}"
            return response

        return timed


router = APIRouter(prefix="/v1", tags=["inference"], responses=PROXY_ERRORS, route_class=ProxyRoute)
UserHeader = Annotated[str | None, Header(alias="X-User-ID")]


async def _forward(
    request: Request,
    path: str,
    body: ChatProxyRequest | CompletionProxyRequest | EmbeddingProxyRequest,
    user: str | None,
    caller: ProxyCaller,
    stream: bool = False,
) -> Response:
    store, settings = caller.store, caller.settings
    model = model_kinds.canonical(body.model)
    entry = caller.route_entry(model)  # read with the API key when it could be
    route = await routing.resolve_async(store, caller.cache, caller.serving, settings, caller.client_code, model, entry)
    call = proxy.Call(
        client_code=caller.client_code,
        route=route,
        path=path,
        request_id=request_id_var.get(),
        user=user or body.user,
        stream=stream,
    )
    # FastAPI has read the body already (Starlette keeps it): the proxy may pass the caller's bytes on as they are.
    raw = await request.body()
    return await proxy.forward(call, body.model_dump(exclude_unset=True), store, settings, raw)


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    request: Request, body: ChatProxyRequest, caller: ProxyCallerDep, user: UserHeader = None
) -> Response:
    return await _forward(request, "/v1/chat/completions", body, user, caller, bool(body.stream))


@router.post("/completions", response_model=None)
async def completions(
    request: Request, body: CompletionProxyRequest, caller: ProxyCallerDep, user: UserHeader = None
) -> Response:
    return await _forward(request, "/v1/completions", body, user, caller, bool(body.stream))


@router.post("/embeddings", response_model=None)
async def embeddings(
    request: Request, body: EmbeddingProxyRequest, caller: ProxyCallerDep, user: UserHeader = None
) -> Response:
    return await _forward(request, "/v1/embeddings", body, user, caller)
