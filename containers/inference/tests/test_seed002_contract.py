"""Seed 002's contract on the llm profile: InferenceRequest ranges and defaults, every error type in the seed's body
`{error, message, details, timestamp, request_id}`, the GPU memory gauge, the docs pages, and its variable names."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from ministudio_serve.app import create_app
from ministudio_serve.cli import parse
from ministudio_serve.deps import get_generation

SEED_ERROR_KEYS = {"error", "message", "details", "timestamp", "request_id"}
SEED_ENV = ("API_KEY", "API_HOST", "API_PORT", "API_WORKERS", "LOG_LEVEL", "DEBUG", "MODEL_NAME",
            "MLFLOW_TRACKING_URI", "MODEL_STAGE", "MODEL_ALIAS", "PORT")  # fmt: skip


def _seed_error(reply: httpx.Response, status: int, kind: str) -> dict:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == SEED_ERROR_KEYS and body["error"] == kind
    assert body["message"] and isinstance(body["details"], dict)
    assert body["request_id"] == reply.headers["x-request-id"]
    datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    return dict(body)


def test_request_schema_states_the_seed_ranges_and_defaults(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["InferenceRequest"]["properties"]
    assert (schema["max_length"]["default"], schema["max_length"]["minimum"], schema["max_length"]["maximum"]) == (
        100,
        1,
        2048,
    )
    assert (schema["temperature"]["default"], schema["temperature"]["minimum"], schema["temperature"]["maximum"]) == (
        0.7,
        0.0,
        2.0,
    )
    assert (schema["top_p"]["default"], schema["top_p"]["minimum"], schema["top_p"]["maximum"]) == (0.95, 0.0, 1.0)
    assert schema["prompt"]["minLength"] == 1 and "2048 tokens" in schema["prompt"]["description"]


@pytest.mark.parametrize(
    "options",
    [
        {"max_length": 1},
        {"temperature": 0.0},
        {"temperature": 2.0, "top_p": 0.0},
        {"top_p": 1.0, "stop_tokens": ["."]},
    ],
)
def test_range_edges_are_accepted(client, options):
    reply = client.post("/predict", json={"prompt": "Once upon a time", "max_length": 2, **options})
    assert reply.status_code == 200, reply.text
    assert reply.json()["tokens_generated"] <= 2


def test_defaults_apply_when_only_a_prompt_is_sent(client):
    reply = client.post("/predict", json={"prompt": "Once upon a time"})
    assert reply.status_code == 200
    assert 1 <= reply.json()["tokens_generated"] <= 100  # max_length's default
    logged = client.get("/logs", params={"n_limit": 1}).json()["logs"][0]
    assert logged["request_id"] == reply.headers["x-request-id"] and logged["completion_tokens"] <= 100


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "max_length": 0}, "max_length"),
        ({"prompt": "x", "max_length": 2049}, "max_length"),
        ({"prompt": "x", "temperature": -0.1}, "temperature"),
        ({"prompt": "x", "temperature": 2.01}, "temperature"),
        ({"prompt": "x", "top_p": -0.5}, "top_p"),
        ({"prompt": "x", "top_p": 1.01}, "top_p"),
        ({"prompt": "x", "stop_tokens": "not-a-list"}, "stop_tokens"),
        ({}, "prompt"),
    ],
)
def test_out_of_range_fields_are_400_validation_error_naming_the_field(client, body, field):
    body = _seed_error(client.post("/predict", json=body), 400, "validation_error")
    assert body["message"].startswith(field) and body["details"]["errors"][0]["field"] == field


def test_a_prompt_over_2048_tokens_is_a_validation_error(client):
    long_prompt = " ".join(["hello"] * 2100)  # one token per word with SmolLM2's tokenizer
    body = _seed_error(client.post("/predict", json={"prompt": long_prompt}), 400, "validation_error")
    assert "at most 2048" in body["message"]


def test_malformed_json_and_an_empty_batch_are_validation_errors(client):
    raw = client.post("/predict", content=b"{not json", headers={"Content-Type": "application/json"})
    _seed_error(raw, 400, "validation_error")
    _seed_error(client.post("/predict/batch", json={"prompts": []}), 400, "validation_error")
    _seed_error(client.post("/predict/batch", json={"prompts": ["x"], "top_p": 2}), 400, "validation_error")


def test_a_missing_or_wrong_key_is_401_unauthorized(settings_factory, make_engine):
    app = create_app(settings_factory(api_key="seed-key"), engine=make_engine())
    with TestClient(app) as c:
        _seed_error(c.post("/predict", json={"prompt": "hi"}), 401, "unauthorized")
        wrong = c.post("/predict/batch", json={"prompts": ["hi"]}, headers={"Authorization": "Bearer nope"})
        _seed_error(wrong, 401, "unauthorized")
        ok = c.post("/predict", json={"prompt": "hi", "max_length": 2}, headers={"Authorization": "Bearer seed-key"})
        assert ok.status_code == 200


def test_an_oversized_body_is_413_payload_too_large(settings_factory, make_engine):
    app = create_app(settings_factory(max_body_bytes=4096), engine=make_engine())
    with TestClient(app) as c:
        _seed_error(c.post("/predict", json={"prompt": "x" * 5000}), 413, "payload_too_large")
        _seed_error(c.post("/predict/batch", json={"prompts": ["x" * 3000, "y" * 3000]}), 413, "payload_too_large")


def test_no_model_loaded_is_503_service_unavailable(settings_factory, tmp_path):
    # A model that cannot load (nothing at the path): the server stays up and says why.
    with TestClient(create_app(settings_factory(model=str(tmp_path / "missing"), preload_task_models=False))) as c:
        for _ in range(200):
            if c.get("/health").json()["model_status"] != "loading":
                break
            time.sleep(0.05)
        body = _seed_error(c.post("/predict", json={"prompt": "hi"}), 503, "service_unavailable")
        assert body["message"].startswith("Model not loaded or service unhealthy")
        _seed_error(c.post("/predict/batch", json={"prompts": ["hi"]}), 503, "service_unavailable")
        assert c.get("/status").json()["model_loaded"] is False


class _Broken:
    async def generate_text(self, *args, **kwargs):
        raise RuntimeError("kv cache corrupted")


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_failure_is_500_internal_server_error(settings_factory, make_engine, debug):
    app = create_app(settings_factory(debug=debug), engine=make_engine())
    app.dependency_overrides[get_generation] = _Broken
    with TestClient(app, raise_server_exceptions=False) as c:
        body = _seed_error(c.post("/predict", json={"prompt": "hi"}), 500, "internal_server_error")
    assert "Traceback" not in str(body)
    if debug:  # seed 002's DEBUG: "detailed error information"
        assert body["details"] == {"exception": "RuntimeError", "detail": "kv cache corrupted"}
    else:
        assert body["details"] == {} and "kv cache" not in str(body)


def test_request_ids_are_uuids_unless_the_client_sends_one(client):
    body = _seed_error(client.post("/predict", json={"prompt": ""}), 400, "validation_error")
    uuid.UUID(body["request_id"])
    given = client.post("/predict", json={"prompt": ""}, headers={"X-Request-ID": "trace-42"})
    assert given.json()["request_id"] == "trace-42"


def test_gpu_memory_gauge_and_seed_metrics_are_exported(client):
    text = client.get("/metrics").text
    for name in ("gpu_memory_usage_bytes", "api_requests_total", "api_request_duration_seconds", "tokens_per_second",
                 "model_loaded 1.0"):  # fmt: skip
        assert name in text, name


def test_docs_and_redoc_answer_without_a_key(settings_factory, make_engine):
    app = create_app(settings_factory(api_key="k"), engine=make_engine())
    with TestClient(app) as c:
        docs, redoc = c.get("/docs"), c.get("/redoc")
        assert docs.status_code == 200 and "swagger-ui" in docs.text
        assert redoc.status_code == 200 and "redoc" in redoc.text.lower()
        paths = c.get("/openapi.json").json()["paths"]
        assert {"/predict", "/predict/batch", "/info", "/status", "/health", "/metrics"} <= set(paths)


def test_info_without_a_registry_says_so(client):
    info = client.get("/info").json()
    assert info["registry"] is None and info["model_version"] == "1"


def test_seed_variables_configure_the_server(monkeypatch):
    for name in SEED_ENV:
        monkeypatch.delenv(name, raising=False)
    defaults = parse([])
    assert (defaults.api_workers, defaults.debug, defaults.mlflow_tracking_uri, defaults.model_stage) == (
        1,
        False,
        None,
        "Production",
    )
    monkeypatch.setenv("API_KEY", "seed-key")
    monkeypatch.setenv("API_HOST", "0.0.0.0")
    monkeypatch.setenv("API_PORT", "8010")
    monkeypatch.setenv("API_WORKERS", "3")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("DEBUG", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://localhost:5000")
    monkeypatch.setenv("MODEL_ALIAS", "champion")
    s = parse([])
    assert (s.api_key, s.host, s.port, s.api_workers, s.log_level, s.debug) == (
        "seed-key",
        "0.0.0.0",  # the seed's value, read back
        8010,
        3,
        "DEBUG",
        True,
    )
    assert (s.mlflow_tracking_uri, s.model, s.model_name, s.model_alias) == (
        "http://localhost:5000",
        "custom-llm",  # MODEL_NAME's default once a registry is set
        "custom-llm",
        "champion",
    )
    monkeypatch.setenv("MODEL_NAME", "my-llm")
    monkeypatch.setenv("MODEL_STAGE", "Staging")
    named = parse(["--api-workers", "2"])
    assert (named.model, named.model_stage, named.api_workers) == ("my-llm", "Staging", 2)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("MODEL_NAME")
    assert parse([]).model == "HuggingFaceTB/SmolLM2-135M-Instruct"  # no registry: the catalogue default


def test_api_workers_starts_that_many_server_processes(tmp_path: Path):
    # Given API_WORKERS=2 and a model that cannot load (so each worker starts in seconds and stays up)
    from functions.local.procs import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SEED_ENV}
    env.update({"API_WORKERS": "2", "API_PORT": str(port), "MODEL_NAME": str(tmp_path / "no-model"),
                "PRELOAD_TASK_MODELS": "false", "REQUEST_LOG_PATH": str(tmp_path / "log.sqlite"),
                "HF_HUB_OFFLINE": "1", "API_KEY": "k"})  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ministudio_serve.cli"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline, health = time.monotonic() + 180, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                started = log.read_text().count("Application startup complete")
                if health.json()["model_status"] == "failed" and started == 2:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        # Then two worker processes serve the port, each reporting its own load
        text = log.read_text()
        assert health is not None and health.json()["model_status"] == "failed", text[-2000:]
        assert text.count("Started server process") == 2, text[-2000:]
    finally:
        proc.terminate()
        proc.wait(30)
