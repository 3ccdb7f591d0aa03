"""Forward an inference request to a routed deployment and log what it cost (tenant, model, tokens, latency, status).

HTTP deployments (local, EKS) get the request with the server key (over aiohttp); SageMaker deployments go through
`invoke_endpoint[_with_response_stream]`. The forwarded body's `model` is always the routed one, so a caller can
never reach another tenant's adapter on a shared server by naming it. Streams pass through chunk by chunk; the
server is always asked for a final usage chunk (for the log), which reaches the caller only if it asked for one.
A server's error answer is re-shaped into the route's error body (functions/deployments/proxy_errors.py), and a
stream that breaks (or ends without `data: [DONE]`) ends with an error event instead of looking like a normal end
(functions/deployments/proxy_stream.py).

Nothing here blocks the event loop: the usage log is written in a worker thread after the answer (or the stream's
end), boto3 calls run in threads, and the route lookup's slow path too (routing.resolve_async). Each answer says how
long the control plane itself took (`Timing`, OVERHEAD_HEADER).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from functions.core.observability import log
from functions.core.settings import Settings
from functions.deployments import proxy_body
from functions.deployments.proxy_call import Call, Timing, pending_log_writes, rejected, timing_var
from functions.deployments.proxy_errors import UpstreamError
from functions.deployments.proxy_stream import keep_event, relay_events, sse_events
from functions.store.mongo import Store

if TYPE_CHECKING:  # imported on first use: the API's cold start does not pay for it
    import aiohttp

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = weakref.WeakKeyDictionary()


__all__ = [
    "Call",
    "Timing",
    "UpstreamError",
    "close_sessions",
    "forward",
    "keep_event",
    "relay_events",
    "session",
    "sse_events",
    "timing_var",
]
OVERHEAD_HEADER = "x-ministudio-overhead-duration-ms"  # as LiteLLM's x-litellm-overhead-duration-ms


def session() -> aiohttp.ClientSession:
    """One pooled session per event loop (uvicorn has one; a Lambda container keeps Mangum's). aiohttp, not httpx:
    its client costs a fraction of httpx's CPU per request, which is most of what the proxy adds
    (bench/proxy_overhead.py)."""
    import aiohttp

    loop = asyncio.get_running_loop()
    found = _sessions.get(loop)
    if found is None or found.closed:
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=64, ttl_dns_cache=300)
        found = _sessions[loop] = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    return found


async def close_sessions() -> None:
    """Close this loop's upstream session and let the usage-log writes still going finish (the app's shutdown; a
    Lambda container never shuts down)."""
    loop = asyncio.get_running_loop()
    found = _sessions.pop(loop, None)
    if found is not None:
        await found.close()
    await drain_log_writes()


async def drain_log_writes() -> None:
    """Wait for this loop's usage-log writes started so far."""
    pending = pending_log_writes(asyncio.get_running_loop())
    while pending:
        await asyncio.gather(*list(pending), return_exceptions=True)


async def forward(
    call: Call, body: dict[str, Any], store: Store, settings: Settings, raw: bytes | None = None
) -> Response:
    """`raw`: the request body as the caller sent it, when `body` was parsed from it (passed on as it is when that
    is safe: re-encoding a long prompt costs a millisecond)."""
    payload, wants_usage = proxy_body.upstream_body(call.route.model, call.stream, body, raw)
    if call.route.kind == "sagemaker":
        from functions.deployments import proxy_sagemaker

        return await proxy_sagemaker.forward(call, payload, wants_usage, store, settings)
    import aiohttp

    headers = {
        "Content-Type": "application/json",
        "X-Request-ID": call.request_id or "",
        "X-Tenant-ID": call.client_code,
        **({"X-User-ID": call.user} if call.user else {}),
    }
    if settings.inference_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.inference_api_key.get_secret_value()}"
    timeout = aiohttp.ClientTimeout(total=settings.proxy_timeout_seconds)
    content = b""
    sent = time.perf_counter()
    try:
        upstream = await session().post(f"{call.route.url}{call.path}", data=payload, headers=headers, timeout=timeout)
        if not call.stream or upstream.status >= 400:
            try:
                content = await upstream.read()
            finally:
                upstream.release()
    except (aiohttp.ClientError, TimeoutError) as exc:  # no answer, or the server died while sending it
        call.timing.upstream += time.perf_counter() - sent
        log("warning", "inference server did not answer", deployment_id=call.route.deployment_id, error=repr(exc))
        call.record_later(store, 502, f"the inference server did not answer ({type(exc).__name__})")
        raise UpstreamError(f"deployment {call.route.deployment_id} did not answer: {type(exc).__name__}") from exc
    call.timing.upstream += time.perf_counter() - sent
    if upstream.status >= 400:
        raise rejected(call, upstream.status, content, store)
    if not call.stream:
        media = upstream.headers.get("content-type", "application/json")
        # The usage log is written after the answer has gone, in a worker thread: nobody waits for MongoDB.
        log_it = BackgroundTask(call.record_answer, store, upstream.status, content)
        return Response(content, status_code=upstream.status, media_type=media, background=log_it)
    return StreamingResponse(
        _relay(call, upstream, wants_usage, store),
        status_code=upstream.status,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _relay(call: Call, upstream: aiohttp.ClientResponse, wants_usage: bool, store: Store) -> AsyncIterator[bytes]:
    try:
        async for event in relay_events(call, sse_events(upstream.content.iter_any()), wants_usage, store):
            yield event
    finally:
        upstream.release()
