"""Settings that shape what the app says about itself: the public URL in the OpenAPI document, and the
environment, level and log directory of every log line (read from Settings, not from os.environ)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.core import observability
from functions.core.settings import get_settings


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setattr(observability, "_logger", None)
    get_settings.cache_clear()
    yield monkeypatch
    if observability._logger is not None:  # the file handler must not outlive the test's directory
        for handler in list(observability._logger.handlers):
            if isinstance(handler, observability.DailyJsonFileHandler):
                observability._logger.removeHandler(handler)
    get_settings.cache_clear()
    observability._logger = None


def test_the_public_base_url_is_the_openapi_server(fresh: pytest.MonkeyPatch) -> None:
    from functions.api.app import create_app

    fresh.setenv("PUBLIC_BASE_URL", "https://api.example.com")
    assert create_app().openapi()["servers"] == [{"url": "https://api.example.com"}]
    fresh.delenv("PUBLIC_BASE_URL")
    get_settings.cache_clear()
    assert "servers" not in create_app().openapi()


def test_log_lines_carry_the_environment_and_go_to_the_log_dir(fresh: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fresh.setenv("ENVIRONMENT", "prod")
    fresh.setenv("LOG_DIR", str(tmp_path))
    fresh.setenv("LOG_LEVEL", "WARNING")
    observability.log("info", "not at this level")
    observability.log("warning", "seen", detail=1)
    lines = [json.loads(line) for path in tmp_path.glob("*.jsonl") for line in path.read_text().splitlines()]
    assert [line["message"] for line in lines] == ["seen"]
    assert lines[0]["environment"] == "prod" and lines[0]["detail"] == 1
