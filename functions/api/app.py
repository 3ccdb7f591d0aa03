"""`create_app()`: the control plane's FastAPI app. Imports stay light (cold start): clients are made on first use."""

from __future__ import annotations

from fastapi import FastAPI

from functions.api import errors
from functions.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from functions.api.routes import files, root, seed_datasets, tenants, uploads
from functions.core.settings import get_settings

UPLOAD_ROUTES = (("POST", "/v1/files"), ("POST", "/fine_tuning/upload-dataset/"))


def create_app() -> FastAPI:
    app = FastAPI(
        title="Mini Studio",
        version="0.1.0",
        description="Fine-tune and serve open-weight LLMs: seed routes with `{ok: ...}` envelopes and an "
        "OpenAI-compatible /v1.",
    )
    errors.install(app)
    for router in (root.router, tenants.router, files.router, uploads.router, seed_datasets.router):
        app.include_router(router)

    def limit_for(method: str, path: str) -> int | None:
        settings = get_settings()
        if method == "POST" and path.startswith("/v1/uploads/") and path.endswith("/parts"):
            return settings.upload_part_max_bytes + 64 * 1024  # multipart framing
        if any(method == m and (path == p or (p.endswith("/") and path.startswith(p))) for m, p in UPLOAD_ROUTES):
            return settings.max_upload_bytes
        return settings.max_request_bytes

    app.add_middleware(BodyLimitMiddleware, limits=limit_for)
    app.add_middleware(RequestContextMiddleware)
    return app
