"""One ASGI middleware for what every request goes through: request id, trusted hosts, server key, body limit, HTTP
metrics.

Pure ASGI rather than BaseHTTPMiddleware, so streamed responses pass through untouched.
"""

from __future__ import annotations

import hmac
import json
import re
import time
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ministudio_serve.errors import error_response
from ministudio_serve.metrics import Metrics

# Probes, metrics scrapers and the docs answer without the key (seed 002's table: "None" on these).
OPEN_PATHS = frozenset(
    {
        "/",
        "/health",
        "/ready",
        "/ping",
        "/metrics",
        "/info",
        "/status",
        "/docs",
        "/redoc",
        "/openapi.json",
        "/docs/oauth2-redirect",
    }
)
# Seed 002's Trusted Hosts leaves the probes alone: kubelets send the pod's IP as Host, SageMaker its own address.
PROBE_PATHS = frozenset({"/health", "/ready", "/ping"})
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# X-User-ID labels an end user inside the tenant for the request log: a label, never authority (DESIGN.md).
current_user: ContextVar[str | None] = ContextVar("current_user", default=None)


def host_of(header: str) -> str:
    """The host name of a Host header, port and IPv6 brackets removed, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def host_allowed(header: str, patterns: Sequence[str]) -> bool:
    """Starlette's TrustedHostMiddleware rule: `*` allows any host, `*.example.com` its subdomains, else an exact
    match."""
    if "*" in patterns:
        return True
    host = host_of(header)
    return bool(host) and any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns)


class Gatekeeper:
    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None,
        max_body_bytes: int,
        metrics: Metrics,
        trusted_hosts: Sequence[str] = ("*",),
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body = max_body_bytes
        self.metrics = metrics
        # Checked here rather than by Starlette's TrustedHostMiddleware, whose 400 is plain text: this one answers in
        # the error shape of the path (seed 002's, or OpenAI's on /v1) with the request id, before the key check.
        self.trusted_hosts = tuple(trusted_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        rid = given if _ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        user = headers.get("x-user-id", "")
        current_user.set(user[:128] if user else None)
        path: str = scope["path"]
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                raw = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message["headers"] = [*raw, (b"x-request-id", rid.encode())]
            await send(message)

        try:
            host = headers.get("host", "")
            if path not in PROBE_PATHS and not host_allowed(host, self.trusted_hosts):
                await error_response(
                    path, 400, f"Invalid host header {host[:255]!r}: not in TRUSTED_HOSTS.", rid, code="invalid_host"
                )(scope, receive, send_with_id)
                return
            needs_key = scope["method"] != "OPTIONS" and path not in OPEN_PATHS
            authorized = not needs_key or self._authorized(headers, scope.get("query_string", b""))
            # Seed 004 sends `api_key` with the request: a JSON body is read (within the limit) to look for it.
            body = await self._read_body(headers, receive) if authorized or _is_json(headers) else None
            if not authorized and not self._body_key_matches(body):
                await error_response(
                    path,
                    401,
                    "Invalid or missing API key: send 'Authorization: Bearer <key>'.",
                    rid,
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )(scope, receive, send_with_id)
                return
            if body is None:
                await error_response(
                    path, 413, f"Request body exceeds {self.max_body} bytes.", rid, code="payload_too_large"
                )(scope, receive, send_with_id)
                return
            await self.app(scope, _replay(body, receive), send_with_id)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or ("unmatched" if status["code"] == 404 else path)
            self.metrics.api_requests.labels(scope["method"], endpoint, str(status["code"])).inc()
            self.metrics.api_duration.labels(scope["method"], endpoint).observe(time.perf_counter() - started)

    def _authorized(self, headers: dict[str, str], query: bytes) -> bool:
        if not self.api_key:
            return True
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("x-api-key", "")
        if not token:  # seed 004's `api_key` query parameter
            token = parse_qs(query.decode("latin-1")).get("api_key", [""])[0]
        return hmac.compare_digest(token.encode(), self.api_key.encode())

    def _body_key_matches(self, body: bytes | None) -> bool:
        """Seed 004's `api_key` field of a JSON body."""
        if not self.api_key or not body:
            return False
        try:
            data = json.loads(body)
        except ValueError:
            return False
        token = data.get("api_key") if isinstance(data, dict) else None
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.api_key.encode())

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes | None:
        """The whole body, or None past the limit (checked on Content-Length first, then on the bytes read)."""
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _is_json(headers: dict[str, str]) -> bool:
    return headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = {"done": False}

    async def replay() -> Any:
        if not sent["done"]:
            sent["done"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the disconnect, which streaming responses listen for

    return replay
