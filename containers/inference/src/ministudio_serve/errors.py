"""Error bodies: OpenAI's shape on /v1 (and /invocations, whose body is an OpenAI request), seed 002's elsewhere.

Every error carries the request id (X-Request-ID header; in the body too where the seed's shape has a field for it).
Bad input is always a 4xx; an unexpected failure is a 500 with a generic message, never a stack trace.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ministudio_serve.engines.adapter_files import AdapterError
from ministudio_serve.engines.base import EngineError, is_out_of_memory, out_of_memory

log = logging.getLogger(__name__)

SEED_TYPES = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    429: "too_many_requests",
    503: "service_unavailable",
}
OPENAI_TYPES = {
    401: "authentication_error",
    404: "invalid_request_error",
    503: "service_unavailable",
    500: "server_error",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


class ModelNotFound(ApiError):
    def __init__(self, model: str) -> None:
        super().__init__(404, f"The model `{model}` does not exist.", code="model_not_found", param="model")


def openai_style(path: str) -> bool:
    return path.startswith("/v1/") or path == "/v1" or path.startswith("/invocations")


def error_response(
    path: str,
    status: int,
    message: str,
    request_id: str,
    code: str | None = None,
    param: str | None = None,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The error in the shape the path's callers read: OpenAI's under /v1 and /invocations, the seed's elsewhere."""
    body: dict[str, Any]
    if openai_style(path):
        kind = OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    else:
        body = {
            "error": SEED_TYPES.get(status, "internal_server_error" if status >= 500 else "bad_request"),
            "message": message,
            "details": details if details is not None else ({"code": code} if code else {}),
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "request_id": request_id,
        }
    return JSONResponse(body, status_code=status, headers={"X-Request-ID": request_id, **(headers or {})})


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or request.headers.get("x-request-id") or "")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None, list[dict[str, Any]]]:
    details = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        details.append({"field": ".".join(loc), "message": str(err.get("msg", "invalid"))})
    first = details[0] if details else {"field": "", "message": "invalid request"}
    where = f"{first['field']}: " if first["field"] else ""
    return f"{where}{first['message']}", first["field"] or None, details


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request.url.path, exc.status, exc.message, request_id_of(request), exc.code, exc.param)

    @app.exception_handler(AdapterError)
    async def _adapter(request: Request, exc: AdapterError) -> JSONResponse:
        return error_response(
            request.url.path, 400, f"Invalid LoRA adapter: {exc}", request_id_of(request), "invalid_adapter"
        )

    @app.exception_handler(EngineError)
    async def _engine(request: Request, exc: EngineError) -> JSONResponse:
        return error_response(request.url.path, exc.status, str(exc), request_id_of(request), exc.code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, details = _validation_message(exc)
        # Seed 002's `details` is an object: the per-field list goes under `errors`.
        return error_response(request.url.path, 400, message, request_id_of(request), None, param, {"errors": details})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request.url.path, exc.status_code, str(exc.detail), request_id_of(request))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_out_of_memory(exc):  # a task model (or any path outside GenerationService) out of GPU memory
            oom = out_of_memory(exc)
            log.error("out of GPU memory on %s: %s", request.url.path, exc)
            return error_response(request.url.path, oom.status, str(oom), request_id_of(request), oom.code)
        log.exception("unhandled error on %s", request.url.path)
        server = getattr(request.app.state, "server", None)
        # Seed 002's DEBUG=true: "detailed error information": the exception's type and message, never a traceback.
        debug = (
            {"exception": type(exc).__name__, "detail": str(exc)[:1000]} if server and server.settings.debug else None
        )
        return error_response(
            request.url.path,
            500,
            "The server had an error processing the request.",
            request_id_of(request),
            details=debug,
        )
