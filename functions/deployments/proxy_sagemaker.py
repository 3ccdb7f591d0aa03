"""The proxy's SageMaker leg: `invoke_endpoint` (and its streaming variant) on the routed endpoint and inference
component. boto3 calls block, so they run in a worker thread; stream parts are relayed as they arrive, through the
same relay as HTTP streams (a broken stream ends with an error event). The container's own error answers are
re-shaped like the HTTP leg's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.responses import Response, StreamingResponse

from functions.compute.serving import Endpoint
from functions.core.observability import log
from functions.core.settings import Settings
from functions.store.mongo import Store

_DONE = object()


async def forward(call: Any, payload: bytes, wants_usage: bool, store: Store, settings: Settings) -> Response:
    from functions.compute import sagemaker_invoke
    from functions.deployments.proxy import UpstreamError, rejected, relay_events, sse_events

    route = call.route
    endpoint = Endpoint(kind="sagemaker", target=route.target, component=route.component)
    if not call.stream:
        try:
            content = await asyncio.to_thread(sagemaker_invoke.invoke, endpoint, payload, settings=settings)
        except sagemaker_invoke.InvokeError as exc:  # the container's answer (ModelError) or SageMaker's refusal
            raise rejected(call, exc.status_code, exc.body, store) from exc
        except Exception as exc:  # no answer at all: the operator's log has why, the caller a 502
            log("warning", "SageMaker endpoint did not answer", deployment_id=route.deployment_id, error=repr(exc))
            call.record(store, 502, f"the endpoint did not answer ({type(exc).__name__})")
            raise UpstreamError(f"deployment {route.deployment_id} did not answer: {type(exc).__name__}") from exc
        call.take_usage_from(content)
        call.record(store, 200)
        return Response(content, media_type="application/json")

    parts = sagemaker_invoke.invoke_stream(endpoint, payload, settings=settings)
    relay = relay_events(call, sse_events(_aiter(parts)), wants_usage, store)
    return StreamingResponse(relay, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _aiter(parts: Iterator[bytes]) -> AsyncIterator[bytes]:
    while True:
        part = await asyncio.to_thread(next, parts, _DONE)
        if part is _DONE:
            return
        assert isinstance(part, bytes)
        yield part
