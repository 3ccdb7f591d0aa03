"""The web console served by the API at /console (only when built), with its security headers; CORS only for the
configured console origins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from functions.core.settings import get_settings

ORIGIN = "https://d111.cloudfront.net"


@pytest.fixture
def app_with(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., TestClient]]:
    def make(**env: str) -> TestClient:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        from functions.api.app import create_app

        return TestClient(create_app(), raise_server_exceptions=False)

    yield make
    get_settings.cache_clear()


@pytest.fixture
def built(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text('<!doctype html><script type="module" src="./assets/app.js"></script>')
    (tmp_path / "assets" / "app.js").write_text("console.log('hi')")
    return tmp_path


def test_built_console_is_served_at_console_with_a_strict_csp(app_with: Callable[..., TestClient], built: Path) -> None:
    client = app_with(CONSOLE_DIR=str(built), CONSOLE_ORIGINS="[]", AWS_ENDPOINT_URL="http://127.0.0.1:5999/")
    bare = client.get("/console", follow_redirects=False)
    assert bare.status_code == 307 and bare.headers["location"] == "/console/"  # relative assets need the slash
    page = client.get("/console/")
    assert page.status_code == 200 and "./assets/app.js" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert "connect-src 'self' http://127.0.0.1:5999;" in csp  # the API, and S3 for presigned uploads (moto here)
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-cache"
    asset = client.get("/console/assets/app.js")
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    assert client.get("/console/../pyproject.toml").status_code == 404
    assert "/console" not in client.get("/openapi.json").json()["paths"]


def test_no_console_route_without_a_build(app_with: Callable[..., TestClient], tmp_path: Path) -> None:
    client = app_with(CONSOLE_DIR=str(tmp_path / "missing"), CONSOLE_ORIGINS="[]")
    assert client.get("/console/").status_code == 404


def test_cors_allows_only_the_configured_console_origin(app_with: Callable[..., TestClient], built: Path) -> None:
    client = app_with(CONSOLE_DIR=str(built), CONSOLE_ORIGINS=f'["{ORIGIN}"]')
    preflight = client.options(
        "/v1/files",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-credentials" not in preflight.headers  # a bearer key, never cookies
    answer = client.get("/", headers={"Origin": ORIGIN})
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert "X-Request-ID" in answer.headers["access-control-expose-headers"]
    other = client.get("/", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    refused = client.options(
        "/v1/files", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert refused.status_code == 400


def test_no_cors_headers_without_configured_origins(app_with: Callable[..., TestClient], built: Path) -> None:
    client = app_with(CONSOLE_DIR=str(built), CONSOLE_ORIGINS="[]")
    assert "access-control-allow-origin" not in client.get("/", headers={"Origin": ORIGIN}).headers


def test_csp_lets_large_uploads_reach_only_the_datasets_bucket() -> None:
    from functions.api.console import csp

    settings = get_settings().model_copy(
        update={"aws_endpoint_url": None, "aws_bucket_name": "ds-bucket", "aws_region": "eu-west-1"}
    )
    assert "connect-src 'self' https://ds-bucket.s3.amazonaws.com https://ds-bucket.s3.eu-west-1.amazonaws.com;" in (
        csp(settings)
    )
