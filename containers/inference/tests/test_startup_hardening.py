"""Issue #17 (seed 002/003 as their users ran them): a key is required unless --insecure-dev says so; `.env` is read
(flags > env > .env > serving_config.yaml); the images' port; JSON logs; a CUDA out-of-memory is a 503 with the reason.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from tests.helpers.tiny_models import BASE
from tests.helpers.waiting import wait_for_health

from ministudio_serve.app import create_app
from ministudio_serve.cli import check_api_key, configure_logging, parse
from ministudio_serve.settings import ServeSettings

ALIASES = {str(a) for f in ServeSettings.model_fields.values() for a in getattr(f.validation_alias, "choices", [])}
ROOT = Path(__file__).resolve().parents[1]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ALIASES and k != "PORT"}
    env.update({"HF_HUB_OFFLINE": "1", **extra})
    return env


@pytest.fixture
def no_serve_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ALIASES | {"PORT"}:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the caller's working directory
    return tmp_path


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_no_api_key_refuses_to_start_naming_api_key(no_serve_env: Path, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        check_api_key(parse([]))
    assert exited.value.code not in (0, None)
    err = capsys.readouterr().err
    assert "API_KEY" in err and "--insecure-dev" in err


def test_console_script_without_a_key_exits_non_zero(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "ministudio_serve.cli", "--port", "1"],
        env=_clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "API_KEY is not set" in proc.stderr


def test_insecure_dev_flag_or_setting_allows_no_key_and_says_so(
    no_serve_env: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    with caplog.at_level(logging.WARNING, logger="ministudio_serve"):
        check_api_key(parse(["--insecure-dev"]))
    assert "INSECURE" in caplog.text and "without authentication" in caplog.text
    monkeypatch.setenv("ALLOW_NO_API_KEY", "1")
    assert parse([]).allow_no_api_key is True
    check_api_key(parse(["--api-key", "k"]))  # a key: nothing to say


def test_insecure_dev_server_starts_and_logs_the_warning(tmp_path: Path):
    from functions.local.procs import free_port

    port = free_port()
    env = _clean_env(MODEL_NAME=str(tmp_path / "no-model"), PRELOAD_TASK_MODELS="false",
                     REQUEST_LOG_PATH=str(tmp_path / "log.sqlite"))  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        argv = [sys.executable, "-m", "ministudio_serve.cli", "--port", str(port), "--insecure-dev"]
        proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_health(port, proc, log)
        assert "INSECURE" in log.read_text()
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_precedence_flags_env_dotenv_serving_config(no_serve_env: Path, monkeypatch: pytest.MonkeyPatch):
    config = no_serve_env / "serving_config.yaml"
    config.write_text("api:\n  port: 1111\n  workers: 3\nmodel:\n  batch_size: 5\n")
    (no_serve_env / ".env").write_text(f"SERVING_CONFIG={config}\nAPI_PORT=2222\nMAX_BATCH_SIZE=6\nAPI_KEY=dot\n")
    from_files = parse([])
    assert (from_files.port, from_files.max_batch_size, from_files.api_workers) == (2222, 6, 3)  # .env > yaml
    assert from_files.api_key == "dot"
    monkeypatch.setenv("API_PORT", "3333")
    assert parse([]).port == 3333  # env > .env
    assert parse(["--port", "4444"]).port == 4444  # flags > env
    assert parse([]).max_batch_size == 6


def test_port_defaults_and_sagemaker_port(no_serve_env: Path, monkeypatch: pytest.MonkeyPatch):
    settings = parse([])
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)  # outside a container: loopback only
    monkeypatch.setenv("API_HOST", "0.0.0.0")  # what the images set
    monkeypatch.setenv("API_PORT", "8000")
    assert (parse([]).host, parse([]).port) == ("0.0.0.0", 8000)
    assert parse(["serve"]).port == 8080  # SageMaker calls 8080 whatever the image's API_PORT
    assert parse(["serve", "--port", "9000"]).port == 9000


def test_images_listen_on_8000_with_json_logs():
    for name in ("Dockerfile", "Dockerfile.cpu"):
        text = (ROOT / name).read_text()
        assert "API_HOST=0.0.0.0" in text and "API_PORT=8000" in text and "LOG_FORMAT=json" in text
        assert "EXPOSE 8000" in text


def test_json_log_lines(
    no_serve_env: Path, capsys: pytest.CaptureFixture[str], restore_logging: None, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("LOG_FORMAT", "json")
    configure_logging(parse([]))
    logging.getLogger("ministudio_serve.test").warning("hello %s", "there", extra={"request_id": "r1"})
    line = capsys.readouterr().err.strip().splitlines()[-1]
    body = json.loads(line)
    assert body["message"] == "hello there" and body["level"] == "WARNING" and body["request_id"] == "r1"
    assert body["logger"] == "ministudio_serve.test" and body["timestamp"].endswith("Z")


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 79.15 GiB total capacity)"),
    ],
)
def test_cuda_out_of_memory_is_a_503_with_the_reason(settings_factory: Any, make_engine: Any, error: Exception):
    engine = make_engine()

    async def out_of_memory(request: Any) -> Any:
        raise error
        yield  # pragma: no cover - an async generator

    engine.generate = out_of_memory  # type: ignore[method-assign]
    app = create_app(settings_factory(), engine=engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        chat = client.post(
            "/v1/chat/completions", json={"model": BASE, "messages": [{"role": "user", "content": "hi"}]}
        )
        assert chat.status_code == 503, chat.text
        body = chat.json()["error"]
        assert body["code"] == "out_of_memory" and "out of memory" in body["message"].lower()
        assert "Tried to allocate" in body["message"]
        seed = client.post("/predict", json={"prompt": "hi"})
        assert seed.status_code == 503 and seed.json()["error"] == "service_unavailable"
        assert "GPU memory" in seed.json()["message"]
