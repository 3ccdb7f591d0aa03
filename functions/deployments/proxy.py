"""Forward an inference request to a routed deployment and log what it cost (tenant, model, tokens, latency, status).

HTTP deployments (local, EKS) get the request with the server key (over aiohttp); SageMaker deployments go through
`invoke_endpoint[_with_response_stream]`. The forwarded body's `model` is always the routed one, so a caller can
never reach another tenant's adapter on a shared server by naming it. Streams pass through chunk by chunk; the
server is always asked for a final usage chunk (for the log), which reaches the caller only if it asked for one.
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
from functions.deployments.routing import Route
from functions.store.mongo import Store

if TYPE_CHECKING:  # imported on first use: the API's cold start does not pay for it
    import aiohttp

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = weakref.WeakKeyDictionary()


class UpstreamError(DomainError):
    status_code = 502
    error_type = "server_error"
    code = "upstream_unavailable"


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
    try:
        upstream = await session().post(f"{call.route.url}{call.path}", data=payload, headers=headers, timeout=timeout)
    except (aiohttp.ClientError, TimeoutError) as exc:
        call.record(store, 502, f"{type(exc).__name__}: {exc}")
        raise UpstreamError(f"deployment {call.route.deployment_id} did not answer: {type(exc).__name__}") from exc
    if not call.stream or upstream.status >= 400:
        try:
            content = await upstream.read()
        finally:
            upstream.release()
        call.take_usage_from(content)
        error = None if upstream.status < 400 else content[:500].decode(errors="replace")
        media = upstream.headers.get("content-type", "application/json")
        # The usage log is written after the answer has gone: the caller never waits for MongoDB.
        log_it = BackgroundTask(call.record, store, upstream.status, error)
        return Response(content, status_code=upstream.status, media_type=media, background=log_it)
    return StreamingResponse(
        _relay(call, upstream, wants_usage, store),
        status_code=upstream.status,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _relay(call: Call, upstream: aiohttp.ClientResponse, wants_usage: bool, store: Store) -> AsyncIterator[bytes]:
    import aiohttp

    status, error = upstream.status, None
    try:
        async for event in sse_events(upstream.content.iter_any()):
            if not keep_event(call, event, wants_usage):
                continue
            yield event
    except (aiohttp.ClientError, TimeoutError) as exc:  # the server died mid-stream: the stream ends early
        status, error = 502, f"stream broken: {type(exc).__name__}: {exc}"
    finally:
        upstream.release()
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
