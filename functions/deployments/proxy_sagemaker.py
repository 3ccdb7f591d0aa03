"""The proxy's SageMaker leg: `invoke_endpoint` (and its streaming variant) on the routed endpoint and inference
component. boto3 calls block, so they run in a worker thread, and so does the usage log's write. A stream's first
part is awaited before answering, so a refusal (no such endpoint, throttled, the container's error) is an HTTP error
like the non-streamed one's, not a 200 that ends at once with an error event; the parts are then relayed as they
arrive, through the same relay as HTTP streams (a stream broken later ends with an error event)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from functions.compute.serving import Endpoint
from functions.core.observability import log
from functions.core.settings import Settings
from functions.store.mongo import Store

_DONE = object()


async def forward(call: Any, payload: bytes, wants_usage: bool, store: Store, settings: Settings) -> Response:
    from functions.compute import sagemaker_invoke
    from functions.deployments.proxy_stream import relay_events, sse_events

    route = call.route
    endpoint = Endpoint(kind="sagemaker", target=route.target, component=route.component)
    sent = time.perf_counter()
    if not call.stream:
        try:
            content = await asyncio.to_thread(sagemaker_invoke.invoke, endpoint, payload, settings=settings)
        except Exception as exc:
            raise _refused(call, exc, store) from exc
        finally:
            call.timing.upstream += time.perf_counter() - sent
        log_it = BackgroundTask(call.record_answer, store, 200, content)
        return Response(content, media_type="application/json", background=log_it)

    parts = sagemaker_invoke.invoke_stream(endpoint, payload, settings=settings)
    try:
        first = await asyncio.to_thread(next, parts, _DONE)  # the call itself, and its first part
    except Exception as exc:
        raise _refused(call, exc, store) from exc
    finally:
        call.timing.upstream += time.perf_counter() - sent
    relay = relay_events(call, sse_events(_aiter(first, parts)), wants_usage, store)
    return StreamingResponse(relay, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _refused(call: Any, exc: Exception, store: Store) -> Exception:
    """The container's answer (ModelError) or SageMaker's refusal, re-shaped; no answer at all is a 502 (the
    operator's log has why)."""
    from functions.compute import sagemaker_invoke
    from functions.deployments.proxy_call import rejected
    from functions.deployments.proxy_errors import UpstreamError

    if isinstance(exc, sagemaker_invoke.InvokeError):
        return rejected(call, exc.status_code, exc.body, store)
    log("warning", "SageMaker endpoint did not answer", deployment_id=call.route.deployment_id, error=repr(exc))
    call.record_later(store, 502, f"the endpoint did not answer ({type(exc).__name__})")
    return UpstreamError(f"deployment {call.route.deployment_id} did not answer: {type(exc).__name__}")


async def _aiter(first: object, parts: Iterator[bytes]) -> AsyncIterator[bytes]:
    part = first
    while part is not _DONE:
        assert isinstance(part, bytes)
        yield part
        part = await asyncio.to_thread(next, parts, _DONE)
