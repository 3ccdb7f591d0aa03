"""Pure ASGI middleware: request ids + access logs, and request body limits enforced while streaming."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException

from functions.api.context import is_openai_path, new_request_id, request_id_var, tenant_var
from functions.core.observability import get_logger

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


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
