"""The proxy's SageMaker leg: `invoke_endpoint` (and its streaming variant) on the routed endpoint and inference
component. boto3 calls block, so they run in a worker thread; stream parts are relayed as they arrive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.responses import Response, StreamingResponse

from functions.compute.serving import Endpoint
from functions.core.settings import Settings
from functions.store.mongo import Store

_DONE = object()


async def forward(call: Any, payload: bytes, wants_usage: bool, store: Store, settings: Settings) -> Response:
    from functions.compute import sagemaker_invoke
    from functions.deployments.proxy import UpstreamError, keep_event, sse_events

    route = call.route
    endpoint = Endpoint(kind="sagemaker", target=route.target, component=route.component)
    if not call.stream:
        try:
            content = await asyncio.to_thread(sagemaker_invoke.invoke, endpoint, payload, settings=settings)
        except Exception as exc:  # ModelError and friends: the endpoint's own answer, logged and passed on as 502
            call.record(store, 502, f"{type(exc).__name__}: {exc}")
            raise UpstreamError(f"SageMaker endpoint {route.target} failed: {type(exc).__name__}: {exc}") from exc
        call.take_usage_from(content)
        call.record(store, 200)
        return Response(content, media_type="application/json")

    parts = sagemaker_invoke.invoke_stream(endpoint, payload, settings=settings)

    async def relay() -> AsyncIterator[bytes]:
        status, error = 200, None
        try:
            async for event in sse_events(_aiter(parts)):
                if keep_event(call, event, wants_usage):
                    yield event
        except Exception as exc:  # the stream broke: the caller sees it end early, the log says why
            status, error = 502, f"{type(exc).__name__}: {exc}"
        finally:
            call.record(store, status, error)

    return StreamingResponse(relay(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _aiter(parts: Iterator[bytes]) -> AsyncIterator[bytes]:
    while True:
        part = await asyncio.to_thread(next, parts, _DONE)
        if part is _DONE:
            return
        assert isinstance(part, bytes)
        yield part
