"""Forward an inference request to a routed deployment and log what it cost (tenant, model, tokens, latency, status).

HTTP deployments (local, EKS) get the request with the server key (over aiohttp); SageMaker deployments go through
`invoke_endpoint[_with_response_stream]`. The forwarded body's `model` is always the routed one, so a caller can
never reach another tenant's adapter on a shared server by naming it. Streams pass through chunk by chunk; the
server is always asked for a final usage chunk (for the log), which reaches the caller only if it asked for one.
A server's error answer is re-shaped into the route's error body, and a stream that breaks (or ends without
`data: [DONE]`) ends with an error event instead of looking like a normal end (functions/deployments/proxy_errors.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from functions.core import ids
from functions.core.errors import DomainError
from functions.core.models import InferenceLog
from functions.core.observability import log
from functions.core.settings import Settings
from functions.deployments import proxy_errors
from functions.deployments.proxy_errors import UpstreamError
from functions.deployments.routing import Route
from functions.store.mongo import Store

if TYPE_CHECKING:  # imported on first use: the API's cold start does not pay for it
    import aiohttp

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = weakref.WeakKeyDictionary()


__all__ = ["Call", "UpstreamError", "close_sessions", "forward", "keep_event", "session", "sse_events"]
_DONE = b"data: [DONE]"


class StreamCut(Exception):
    """The upstream stream ended without `data: [DONE]` (a server that died between two events)."""


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
    """Close this loop's upstream session (the app's shutdown; a Lambda container never shuts down)."""
    found = _sessions.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()


async def forward(call: Call, body: dict[str, Any], store: Store, settings: Settings) -> Response:
    body = {**body, "model": call.route.model}
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage")) if call.stream else True
    if call.stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    payload = json.dumps(body).encode()
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
    try:
        upstream = await session().post(f"{call.route.url}{call.path}", data=payload, headers=headers, timeout=timeout)
        if not call.stream or upstream.status >= 400:
            try:
                content = await upstream.read()
            finally:
                upstream.release()
    except (aiohttp.ClientError, TimeoutError) as exc:  # no answer, or the server died while sending it
        log("warning", "inference server did not answer", deployment_id=call.route.deployment_id, error=repr(exc))
        call.record(store, 502, f"the inference server did not answer ({type(exc).__name__})")
        raise UpstreamError(f"deployment {call.route.deployment_id} did not answer: {type(exc).__name__}") from exc
    if upstream.status >= 400:
        raise rejected(call, upstream.status, content, store)
    if not call.stream:
        call.take_usage_from(content)
        media = upstream.headers.get("content-type", "application/json")
        # The usage log is written after the answer has gone: the caller never waits for MongoDB.
        log_it = BackgroundTask(call.record, store, upstream.status, None)
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
    call.record(store, error.status_code, error.message)
    return error


async def _relay(call: Call, upstream: aiohttp.ClientResponse, wants_usage: bool, store: Store) -> AsyncIterator[bytes]:
    try:
        async for event in relay_events(call, sse_events(upstream.content.iter_any()), wants_usage, store):
            yield event
    finally:
        upstream.release()


async def relay_events(
    call: Call, events: AsyncIterator[bytes], wants_usage: bool, store: Store
) -> AsyncIterator[bytes]:
    """Pass whole events on. A stream that breaks, or ends without `data: [DONE]`, ends with an error event for the
    caller (never a silent, normal-looking end), a warning for the operator and status 502 in the usage log."""
    status, error = 200, None
    try:
        async for event in events:
            if event.strip() == _DONE:
                yield _DONE + b"\n\n"
                return
            if not event.endswith(b"\n\n"):
                raise StreamCut("the stream ended inside an event")
            if (failure := _error_in(event)) is not None:  # the server's own error event: re-shaped, and the end
                status, error = 502, "the inference server sent an error mid-stream"
                yield proxy_errors.upstream_event_error(failure, call.request_id, [call.route.model])
                return
            if keep_event(call, event, wants_usage):
                yield event
        raise StreamCut("the stream ended without data: [DONE]")
    except Exception as exc:  # the server died mid-stream: a broken connection, or an end that came too soon
        status, error = 502, f"the answer was cut off ({type(exc).__name__})"
        where = {"deployment_id": call.route.deployment_id, "request_id": call.request_id}
        log("warning", "inference stream interrupted", **where, error=repr(exc))
        yield proxy_errors.interrupted(call.request_id)
    finally:
        call.record(store, status, error)


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Whole SSE events (each ending in a blank line) from arbitrary byte chunks."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            yield event + b"\n\n"
    if buffer.strip():
        yield buffer


def _error_in(event: bytes) -> dict[str, Any] | None:
    text = event.strip()
    if not text.startswith(b"data:") or b'"error"' not in text:
        return None
    with contextlib.suppress(ValueError):
        data = json.loads(text[5:])
        if isinstance(data, dict) and data.get("error"):
            return data
    return None


def keep_event(call: Call, event: bytes, wants_usage: bool) -> bool:
    """Note the usage chunk; pass it on only when the caller asked for it (`stream_options.include_usage`)."""
    text = event.strip()
    if not text.startswith(b"data:") or text == b"data: [DONE]":
        return True
    try:
        data = json.loads(text[5:])
    except ValueError:
        return True
    if isinstance(data, dict) and data.get("usage"):
        call.take_usage(data)
        return wants_usage or bool(data.get("choices"))
    return True
