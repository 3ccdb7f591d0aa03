"""Pure ASGI middleware: request ids + access logs, caps on stored header values, a timeout on stalled request
bodies, and request body limits enforced while streaming."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import HTTPException

from functions.api.context import is_openai_path, new_request_id, request_id_var, tenant_var
from functions.api.errors import error_response
from functions.core.errors import DomainError
from functions.core.observability import get_logger

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]
# Free-text headers whose values get stored (job records, usage logs, the proxy's upstream headers): name -> cap.
HEADER_CAPS = {b"x-user-id": ("X-User-ID", 256), b"idempotency-key": ("Idempotency-Key", 255)}


class RequestContextMiddleware:
    """One request id per request (echoed as X-Request-ID, set as the log correlation id) and an access log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"x-request-id")
        request_id = new_request_id(raw.decode("latin-1") if raw else None)
        token = request_id_var.set(request_id)
        tenant_token = tenant_var.set(None)
        logger = get_logger()
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logger.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "tenant": tenant_var.get(),
                    "request_id": request_id,
                },
            )
            request_id_var.reset(token)
            tenant_var.reset(tenant_token)


class HeaderLimitMiddleware:
    """400 naming the header when a stored free-text header is over its cap, checked once here for every route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for raw_name, value in scope.get("headers") or []:
                cap = HEADER_CAPS.get(raw_name.lower())
                if cap is not None and len(value.decode("utf-8", "replace")) > cap[1]:
                    name, limit = cap
                    message = f"the {name} header is longer than {limit} characters"
                    response = error_response(scope.get("path", ""), 400, message, param=name, code="invalid_value")
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class _BodyStalled(DomainError, HTTPException):
    """A DomainError, so the error handlers shape it (code included); an HTTPException, so FastAPI's body parsing
    re-raises it rather than turning it into a 400."""

    status_code = 408
    code = "request_timeout"

    def __init__(self, seconds: float) -> None:
        message = f"the request body stalled: nothing arrived for {seconds:g} seconds"
        DomainError.__init__(self, message)
        HTTPException.__init__(self, 408, detail=message)


class BodyTimeoutMiddleware:
    """408 when a request body stops arriving: each read of it must bring something within the timeout.

    In AWS, API Gateway receives the whole request (under its own timeouts) before Lambda runs, so this never fires
    there; under uvicorn (`make run`, containers) nothing else stops a client that starts a body and never ends it
    from holding a request open. Once the body is complete, reads (a streaming response waiting for the client to
    disconnect) are not timed."""

    def __init__(self, app: ASGIApp, timeout: Callable[[], float]) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seconds = self.timeout()
        body_done = stalled = started = False

        async def timed_receive() -> dict[str, Any]:
            nonlocal body_done, stalled
            message: dict[str, Any]
            if body_done:
                message = await receive()
                return message
            try:
                # asyncio.timeout, not wait_for: wait_for wraps each read in a task of its own (Python 3.11), an
                # extra trip round the event loop for every request body (bench/proxy_overhead.py).
                async with asyncio.timeout(seconds):
                    message = await receive()
            except TimeoutError:
                stalled = True
                raise _BodyStalled(seconds) from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def tracking_send(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if stalled:  # the rest of the body may still come: the connection cannot carry another request
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, timed_receive, tracking_send)
        except _BodyStalled as exc:
            # Reached when the app let it through; once a response has started, returning without finishing it
            # makes the server close the connection, which is all that is left to do.
            if not started:
                response = error_response(scope.get("path", ""), 408, exc.message, code=exc.code)
                await response(scope, receive, tracking_send)


class _TooLarge(HTTPException):
    """An HTTPException so FastAPI's body parsing re-raises it and the error handlers shape the 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"request body exceeds the limit of {limit} bytes")


class BodyLimitMiddleware:
    """413 for bodies over the route's limit: from Content-Length up front, else by counting streamed bytes,
    so an oversize upload is refused without being buffered whole."""

    def __init__(self, app: ASGIApp, limits: Callable[[str, str], int]) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope.get("path", ""), scope.get("method", "GET")
        limit = self.limits(method, path)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reject(send, path, limit)
            return
        received = 0
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _reject(send, path, limit)


async def _reject(send: Any, path: str, limit: int) -> None:
    message = f"request body exceeds the limit of {limit} bytes"
    if is_openai_path(path):
        body: dict[str, Any] = {
            "error": {"message": message, "type": "invalid_request_error", "param": None, "code": "payload_too_large"}
        }
    else:
        body = {"ok": False, "error": message}
    body_bytes = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body_bytes)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body_bytes})
