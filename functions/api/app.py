"""`create_app()`: the control plane's FastAPI app. Imports stay light (cold start): clients are made on first use."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import FastAPI

from functions.api import console, errors
from functions.api.middleware import (
    BodyLimitMiddleware,
    BodyTimeoutMiddleware,
    HeaderLimitMiddleware,
    RequestContextMiddleware,
)
from functions.core.settings import get_settings

UPLOAD_ROUTES = (("POST", "/v1/files"), ("POST", "/fine_tuning/upload-dataset/"))


@contextmanager
def _no_pydantic_v1() -> Iterator[None]:
    """FastAPI asks, for every route field, whether it is a pydantic.v1 model, importing pydantic.v1 to find out
    (~60 ms, a third of the cold-start budget). No model here is v1, so answer "no" by making the import fail
    while routes are built, then let the module import normally again."""
    already = "pydantic.v1" in sys.modules
    if not already:
        sys.modules["pydantic.v1"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if not already and sys.modules.get("pydantic.v1", 0) is None:
            del sys.modules["pydantic.v1"]


def create_app() -> FastAPI:
    with _no_pydantic_v1():
        return _build()


def _build() -> FastAPI:
    # Route modules register their routes when imported: import them under _no_pydantic_v1 too.
    from functions.api.routes import (
        deployments,
        files,
        inference,
        jobs,
        models,
        root,
        seed_datasets,
        seed_inference,
        seed_jobs,
        tenants,
        uploads,
        usage,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        from functions.deployments.proxy import close_sessions

        await close_sessions()

    app = FastAPI(
        lifespan=lifespan,
        title="Mini Studio",
        version="0.1.0",
        description="Fine-tune and serve open-weight LLMs: seed routes with `{ok: ...}` envelopes and an "
        "OpenAI-compatible /v1.",
        # Behind API Gateway's custom domain (the stack sets PUBLIC_BASE_URL), /docs must call that URL.
        servers=[{"url": base} for base in [get_settings().public_base_url] if base],
    )
    errors.install(app)
    openai_like = (root, tenants, files, uploads, jobs, models, deployments, inference, usage)
    routers = (*openai_like, seed_datasets, seed_jobs, seed_inference)
    for router in (module.router for module in routers):
        app.include_router(router)

    def limit_for(method: str, path: str) -> int:
        settings = get_settings()
        if method == "POST" and path.startswith("/v1/uploads/") and path.endswith("/parts"):
            return settings.upload_part_max_bytes + 64 * 1024  # multipart framing
        if any(method == m and (path == p or (p.endswith("/") and path.startswith(p))) for m, p in UPLOAD_ROUTES):
            return settings.max_upload_bytes
        return settings.max_request_bytes

    _document_error_models(app)
    app.add_middleware(BodyLimitMiddleware, limits=limit_for)
    app.add_middleware(BodyTimeoutMiddleware, timeout=lambda: get_settings().request_body_timeout_seconds)
    app.add_middleware(HeaderLimitMiddleware)
    app.add_middleware(RequestContextMiddleware)  # every answer above carries the request id
    console.install(app, get_settings())  # /console when built; CORS (outermost) when CONSOLE_ORIGINS is set
    return app


def _document_error_models(app: FastAPI) -> None:
    """Add the error bodies that routes reference by $ref to the OpenAPI components, when the schema is built."""
    from functions.api.schemas import ERROR_MODELS

    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in ERROR_MODELS:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
