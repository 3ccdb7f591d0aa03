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
import contextlib
import json
import time
import weakref
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from functions.core import ids
from functions.core.errors import DomainError
from functions.core.models import InferenceLog
from functions.core.observability import log
from functions.core.settings import Settings
from functions.deployments import proxy_body, proxy_errors
from functions.deployments.proxy_errors import UpstreamError
from functions.deployments.proxy_stream import keep_event, relay_events, sse_events
from functions.deployments.routing import Route
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
]
OVERHEAD_HEADER = "x-ministudio-overhead-duration-ms"  # as LiteLLM's x-litellm-overhead-duration-ms
_log_writes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[asyncio.Future[None]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass
class Timing:
    """Where a proxied request's time went: from the route's start (the proxy routes' handler sets it, see
    functions/api/routes/inference.py), less the time spent waiting on the upstream (for a stream: until its
    response headers). What is left is the control plane's overhead, sent back in OVERHEAD_HEADER."""

    started: float = field(default_factory=time.perf_counter)
    upstream: float = 0.0  # seconds

    def overhead_ms(self) -> float:
        return max(0.0, (time.perf_counter() - self.started - self.upstream) * 1000)


timing_var: ContextVar[Timing | None] = ContextVar("proxy_timing", default=None)


@dataclass
class Call:
    """One proxied request: who asked, for what, and what it cost; becomes an InferenceLog."""

    client_code: str
    route: Route
    path: str
    request_id: str | None
    user: str | None
    stream: bool = False
    started: float = field(default_factory=time.perf_counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timing: Timing = field(default_factory=lambda: timing_var.get() or Timing())

    def record_later(self, store: Store, status_code: int, error: str | None = None) -> None:
        """`record` in a worker thread: pymongo blocks, and the event loop serves every other request meanwhile.
        Not awaited (a stream's end may come with the caller's cancellation); `close_sessions` waits for them."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a stream finalised after its loop stopped: no request is waiting any more
            self.record(store, status_code, error)
            return
        write = loop.run_in_executor(None, self.record, store, status_code, error)
        pending = _log_writes.setdefault(loop, set())
        pending.add(write)
        write.add_done_callback(pending.discard)

    def record(self, store: Store, status_code: int, error: str | None = None) -> None:
        entry = InferenceLog(
            id=ids.new_id("ilog-"),
            client_code=self.client_code,
            model=self.route.model,
            deployment_id=self.route.deployment_id,
            route=self.path,
            user=self.user,
            status_code=status_code,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
            stream=self.stream,
            error=error,
            request_id=self.request_id,
        )
        try:
            store.inference_logs.add(entry)
        except Exception as exc:  # the answer already left: a lost log line must not turn it into an error
            log("warning", "inference log write failed", error=str(exc), request_id=self.request_id)

    def record_answer(self, store: Store, status_code: int, content: bytes) -> None:
        """The log of a whole answer, its usage read from it (off the event loop too: answers can be long)."""
        self.take_usage_from(content)
        self.record(store, status_code)

    def take_usage_from(self, content: bytes) -> None:
        with contextlib.suppress(ValueError):
            self.take_usage(json.loads(content))

    def take_usage(self, body: Any) -> None:
        usage = body.get("usage") if isinstance(body, dict) else None
        if isinstance(usage, dict):
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or usage.get("tokens_generated") or 0)
        elif isinstance(body, dict) and "tokens_generated" in body:  # seed 002's /predict
            self.completion_tokens = int(body.get("tokens_generated") or 0)


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
    pending = _log_writes.get(asyncio.get_running_loop())
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


def rejected(call: Call, status: int, content: bytes, store: Store) -> DomainError:
    """A server's error answer: logged whole for the operator; for the caller, its message only, in the route's
    error shape with the caller's request id (the API's error handlers shape DomainErrors)."""
    body = content[:2000].decode(errors="replace")
    log("warning", "inference server answered an error", deployment_id=call.route.deployment_id, body=body)
    error = proxy_errors.rejected(status, content, [call.route.model])
    call.record_later(store, error.status_code, error.message)
    return error


async def _relay(call: Call, upstream: aiohttp.ClientResponse, wants_usage: bool, store: Store) -> AsyncIterator[bytes]:
    try:
        async for event in relay_events(call, sse_events(upstream.content.iter_any()), wants_usage, store):
            yield event
    finally:
        upstream.release()
