"""Error bodies: OpenAI's `{"error": {...}}` under /v1, the seed's `{"ok": false, "error": ...}` elsewhere.

Every error carries the request id; none carries a stack trace; bad input is always a 4xx that names the field.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from functions.api.context import is_openai_path, request_id_var
from functions.core.errors import DomainError, RateLimited
from functions.core.observability import get_logger

_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


def error_response(
    path: str, status: int, message: str, *, param: str | None = None, code: str | None = None, kind: str | None = None
) -> JSONResponse:
    request_id = request_id_var.get()
    body: dict[str, Any]
    if is_openai_path(path):
        error_type = kind or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        body = {
            "error": {"message": message, "type": error_type, "param": param, "code": code, "request_id": request_id}
        }
    else:
        body = {"ok": False, "error": message, "request_id": request_id}
    return JSONResponse(body, status_code=status)


def _loc(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or "body"


async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    response = error_response(
        request.url.path, exc.status_code, exc.message, param=exc.param, code=exc.code, kind=exc.error_type
    )
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _json_invalid(exc: RequestValidationError) -> str | None:
    """The message for a body that is not JSON at all; None for any other validation error.

    FastAPI reports it as loc ("body", <char offset>), which would read as a field named "9": say where instead.
    """
    for error in exc.errors():
        if error.get("type") != "json_invalid":
            continue
        reason = (error.get("ctx") or {}).get("error") or error.get("msg") or "JSON decode error"
        loc = error.get("loc", ())
        pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
        doc = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else exc.body
        if pos is None or not isinstance(doc, str):
            return f"the request body is not valid JSON: {reason}"
        line = doc.count("\n", 0, pos) + 1
        column = pos - doc.rfind("\n", 0, pos)
        return f"the request body is not valid JSON: {reason} at line {line} column {column} (char {pos})"
    return None


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    status = 400 if is_openai_path(request.url.path) else 422
    not_json = _json_invalid(exc)
    if not_json is not None:
        return error_response(request.url.path, status, not_json, code="invalid_json")
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    field = _loc(first.get("loc", ()))
    message = f"{field}: {first.get('msg', 'invalid value')}"
    if len(exc.errors()) > 1:
        message += f" (and {len(exc.errors()) - 1} more problem(s))"
    return error_response(request.url.path, status, message, param=field, code="invalid_value")


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    response = error_response(request.url.path, exc.status_code, message)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    get_logger().exception("unhandled error", extra={"path": request.url.path})
    return error_response(request.url.path, 500, "internal error; quote the request id when reporting it")


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
