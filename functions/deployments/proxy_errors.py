"""Errors of the inference proxy, in the control plane's own shapes.

An inference server's error answer is re-raised as a DomainError carrying only the server's message (redacted for
the caller: a shared server's messages may name other tenants' adapters, paths and addresses), so the API shapes it
like every other error of the route (OpenAI's body on /v1, the seed's elsewhere) with the caller's request id. A
stream that breaks ends with OpenAI's in-stream error event, which the openai SDK raises as `APIError`.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from functions.core.errors import DomainError
from functions.deployments import redact

STREAM_INTERRUPTED = "stream_interrupted"
_TOKEN = re.compile(r"^[A-Za-z0-9_.\-\[\]]{1,64}$")  # a server's `code`/`param` passes only as a plain token
_TYPES = {404: "not_found_error", 429: "rate_limit_error"}


class UpstreamError(DomainError):
    status_code = 502
    error_type = "server_error"
    code = "upstream_unavailable"


class UpstreamRejected(DomainError):
    """The inference server answered with an error: its status, its message (redacted), its code and param."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.status_code = status
        self.error_type = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def rejected(status: int, content: bytes, own: list[str]) -> DomainError:
    """The error to answer with for a server's error body (OpenAI's, seed 002's, FastAPI's or anything else)."""
    if status in (401, 403):  # the server refused the control plane's key: the platform's fault, not the caller's
        return UpstreamError("the inference server refused the platform's credentials; quote the request id")
    body: Any = None
    with contextlib.suppress(ValueError):
        body = json.loads(content)
    message, code, param = _fields(body)
    shown = redact.for_tenant(message, own) if message else f"the inference server answered HTTP {status}"
    return UpstreamRejected(status, shown, param=_token(param), code=_token(code))


def stream_error(request_id: str | None, message: str, code: str = STREAM_INTERRUPTED) -> bytes:
    """OpenAI's in-stream error event (the openai SDK raises APIError on a chunk with an `error` key)."""
    error = {"message": message, "type": "server_error", "param": None, "code": code, "request_id": request_id}
    return f"data: {json.dumps({'error': error})}\n\n".encode()


def interrupted(request_id: str | None) -> bytes:
    message = (
        "the inference server stopped before the answer was complete; the text received is partial "
        f"(request id {request_id})"
    )
    return stream_error(request_id, message)


def upstream_event_error(data: dict[str, Any], request_id: str | None, own: list[str]) -> bytes:
    """A server's own error event, re-shaped like `rejected` (its message only, redacted, with the request id)."""
    message, code, _ = _fields(data)
    shown = redact.for_tenant(message, own) if message else "the inference server failed mid-stream"
    return stream_error(request_id, f"{shown} (request id {request_id})", _token(code) or "server_error")


def _fields(body: Any) -> tuple[str, str | None, str | None]:
    if not isinstance(body, dict):
        return "", None, None
    error = body.get("error")
    if isinstance(error, dict):  # OpenAI's shape
        return str(error.get("message") or ""), error.get("code"), error.get("param")
    details = body.get("details")
    details = details if isinstance(details, dict) else {}
    message = body.get("message") or body.get("detail") or (error if isinstance(error, str) else "")
    return (message if isinstance(message, str) else ""), details.get("code"), None


def _token(value: Any) -> str | None:
    return value if isinstance(value, str) and _TOKEN.fullmatch(value) else None
