"""The web console (console/, a static build) served by the API at /console, and CORS for a console hosted elsewhere.

Locally `make run` serves the built files from the API process: one origin, nothing to configure. In AWS the console
is on CloudFront and the API allows its origin (`CONSOLE_ORIGINS`). Both are decided once, when the app is built, and
import nothing when unused: the Lambda bundle has no console/dist, so its cold start is unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from fastapi import FastAPI

    from functions.core.settings import Settings

MOUNT = "/console"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
EXPOSED = ["X-Request-ID", "x-ministudio-overhead-duration-ms", "Retry-After"]
ALLOWED = ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID", "X-User-ID"]


def csp(settings: Settings) -> str:
    """The console's page may load only its own scripts and styles, and talk only to this origin (the API) and the
    datasets bucket its large uploads are POSTed to (presigned)."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
        f"connect-src 'self' {' '.join(storage_origins(settings))}; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


def storage_origins(settings: Settings) -> list[str]:
    if settings.aws_endpoint_url:  # moto locally (or another S3-compatible endpoint)
        parts = urlsplit(settings.aws_endpoint_url)
        return [f"{parts.scheme}://{parts.netloc}"]
    bucket, region = settings.aws_bucket_name, settings.aws_region
    return [f"https://{bucket}.s3.amazonaws.com", f"https://{bucket}.s3.{region}.amazonaws.com"]


def console_dir(settings: Settings) -> Path:
    if settings.console_dir:
        return Path(settings.console_dir)
    return Path(__file__).resolve().parents[2] / "console" / "dist"


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the built console when there is one; add CORS when origins are configured."""
    root = console_dir(settings)
    if (root / "index.html").is_file():
        _mount(app, root, {"Content-Security-Policy": csp(settings), **SECURITY_HEADERS})
    if settings.console_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.console_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=ALLOWED,
            expose_headers=EXPOSED,
            max_age=600,
        )


def _mount(app: FastAPI, root: Path, headers: dict[str, str]) -> None:
    from starlette.responses import RedirectResponse, Response
    from starlette.staticfiles import StaticFiles
    from starlette.types import Scope

    class ConsoleFiles(StaticFiles):
        async def get_response(self, path: str, scope: Scope) -> Response:
            response = await super().get_response(path, scope)
            response.headers.update(headers)
            # Hashed asset names never change; index.html must be fetched fresh to find the new ones.
            cache = "public, max-age=31536000, immutable" if path.startswith("assets/") else "no-cache"
            response.headers.setdefault("Cache-Control", cache)
            return response

    @app.get(MOUNT, include_in_schema=False)
    def console_root() -> Any:
        return RedirectResponse(MOUNT + "/")

    app.mount(MOUNT, ConsoleFiles(directory=root, html=True), name="console")
