"""Seed 002/003/004 routes, their shapes and errors; auth, body limit, request ids, metrics and the SQLite log."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from tests.helpers.tiny_models import BASE

from ministudio_serve.app import create_app

SEED_ERROR_KEYS = {"error", "message", "details", "timestamp", "request_id"}


def test_predict_returns_inference_response(client):
    reply = client.post("/predict", json={"prompt": "Once upon a time", "max_length": 5, "temperature": 0})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {
        "generated_text",
        "prompt",
        "tokens_generated",
        "processing_time",
        "model_name",
        "model_version",
        "timestamp",
    }
    assert body["prompt"] == "Once upon a time" and 1 <= body["tokens_generated"] <= 5
    assert body["model_name"] == BASE
    datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))


def test_predict_batch_answers_each_prompt(client):
    reply = client.post("/predict/batch", json={"prompts": ["Hello world", "How are you?"], "max_length": 4})
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert [r["prompt"] for r in results] == ["Hello world", "How are you?"]
    assert reply.json()["batch_size"] == 2


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "", "max_length": 5},
        {"prompt": "x", "max_length": 0},
        {"prompt": "x", "max_length": 2049},
        {"prompt": "x", "temperature": 2.5},
        {"prompt": "x", "top_p": 1.5},
        {"max_length": 5},
    ],
)
def test_predict_validation_errors_use_the_seed_shape(client, body):
    reply = client.post("/predict", json=body)
    assert reply.status_code == 400
    assert set(reply.json()) == SEED_ERROR_KEYS
    assert reply.json()["error"] == "validation_error"
    assert reply.json()["request_id"] == reply.headers["x-request-id"]


def test_health_info_status_shapes(client):
    health = client.get("/health").json()
    assert set(health) == {"status", "api_status", "model_status", "gpu_status", "timestamp", "uptime_seconds"}
    assert (health["status"], health["api_status"], health["model_status"]) == ("healthy", "running", "loaded")
    assert client.get("/ready").status_code == 200
    info = client.get("/info").json()
    assert info["model_name"] == BASE and info["engine"] == "transformers" and info["context_length"] == 256
    assert client.get("/status").json()["model_loaded"] is True


def test_seed_003_models_infer_and_batch(client):
    models = client.get("/models").json()
    assert "generator" in [m["name"] for m in models["models"]]
    reply = client.post(
        "/infer",
        json={"text": "The future of AI is", "model": "generator", "version": "v1", "parameters": {"max_length": 4}},
    )
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"success", "result", "model_used", "latency_ms", "request_id", "timestamp", "metadata"}
    assert body["success"] is True and body["model_used"] == "generator:v1"
    assert body["metadata"]["model_type"] == "generator"
    batch = client.post(
        "/infer/batch",
        json={"requests": [{"text": "First", "model": "generator"}, {"text": "Second", "model": "translator"}]},
    ).json()
    assert [r["success"] for r in batch["results"]] == [True, False]
    assert "does not exist" in batch["results"][1]["error"]
    wrong_version = client.post("/infer", json={"text": "x", "model": "generator", "version": "v9"})
    assert wrong_version.status_code == 404 and wrong_version.json()["error"] == "not_found"


def test_seed_004_predict_by_model_and_version_and_logs(client):
    reply = client.post(f"/predict/{BASE}/1", json={"input_data": {"prompt": "Hi", "max_tokens": 3}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == BASE and reply.json()["usage"]["completion_tokens"] >= 1
    chat = client.post(
        f"/predict/{BASE}/latest",
        json={"input_data": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}},
    )
    assert chat.status_code == 200
    assert client.post(f"/predict/{BASE}/7", json={"input_data": {"prompt": "Hi"}}).status_code == 404
    assert client.post(f"/predict/{BASE}/1", json={"input_data": {}}).status_code == 400
    logs = client.get("/logs", params={"n_limit": 2}).json()
    assert logs["count"] == 2
    newest = logs["logs"][0]
    assert newest["route"] == "/predict/{model}/{version}" and newest["model"] == BASE
    assert newest["status"] == "success" and newest["completion_tokens"] >= 1 and newest["latency_ms"] > 0
    assert newest["request_id"] == chat.headers["x-request-id"]
    client.post("/predict", json={"prompt": "Hi", "max_length": 2}, headers={"X-User-ID": "end-user-7"})
    assert client.get("/logs", params={"n_limit": 1}).json()["logs"][0]["user"] == "end-user-7"
    assert client.get("/logs", params={"n_limit": 0}).status_code == 400


def test_request_id_is_echoed(client):
    reply = client.get("/status", headers={"X-Request-ID": "abc-123"})
    assert reply.headers["x-request-id"] == "abc-123"


def test_metrics_use_vllm_and_seed_names(client):
    client.post("/predict", json={"prompt": "Hi", "max_length": 3})
    text = client.get("/metrics").text
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:time_to_first_token_seconds_count",
        "vllm:e2e_request_latency_seconds_count",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "api_requests_total",
        "api_request_duration_seconds",
        "tokens_per_second",
        "model_loaded 1.0",
        "ministudio_lora_adapters_loaded",
    ):
        assert name in text, name
    assert f'vllm:prompt_tokens_total{{model_name="{BASE}"}}' in text
    assert 'api_requests_total{endpoint="/predict",method="POST",status="200"}' in text


def test_body_over_the_limit_is_413(settings_factory, make_engine):
    app = create_app(settings_factory(max_body_bytes=2048), engine=make_engine())
    with TestClient(app) as c:
        big = {"prompt": "x" * 5000}
        seed = c.post("/predict", json=big)
        assert seed.status_code == 413 and seed.json()["error"] == "payload_too_large"
        openai = c.post("/v1/completions", json={"model": BASE, **big})
        assert openai.status_code == 413 and openai.json()["error"]["code"] == "payload_too_large"


def test_server_key_guards_everything_but_probes(settings_factory, make_engine):
    app = create_app(settings_factory(api_key="s3cret"), engine=make_engine())
    with TestClient(app) as c:
        for path in ("/health", "/ping", "/metrics", "/info", "/status", "/ready", "/docs", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        denied = c.post("/predict", json={"prompt": "hi", "max_length": 2})
        assert denied.status_code == 401 and denied.json()["error"] == "unauthorized"
        wrong = c.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert c.get("/logs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        ok = c.post("/predict", json={"prompt": "hi", "max_length": 2}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_routes_answer_503_until_the_model_is_loaded(settings_factory, monkeypatch):
    release = threading.Event()

    def slow_build(settings):  # stands in for a model that takes a while to load
        release.wait(30)
        raise RuntimeError("weights unreadable")

    monkeypatch.setattr("ministudio_serve.engines.factory.build_engine", slow_build)
    with TestClient(create_app(settings_factory())) as c:
        assert c.get("/health").json()["model_status"] == "loading"
        assert c.get("/ready").status_code == 503
        assert c.get("/ping").status_code == 503
        seed = c.post("/predict", json={"prompt": "hi"})
        assert seed.status_code == 503 and seed.json()["error"] == "service_unavailable"
        openai = c.post("/v1/chat/completions", json={"model": BASE, "messages": [{"role": "user", "content": "x"}]})
        assert openai.status_code == 503 and openai.json()["error"]["type"] == "service_unavailable"
        release.set()
        for _ in range(100):
            if c.get("/health").status_code == 503:
                break
            threading.Event().wait(0.05)
        health = c.get("/health")
        assert health.status_code == 503 and health.json()["model_status"] == "failed"
        assert "weights unreadable" in c.get("/ready").json()["error"]


def test_cors_preflight_is_answered_before_the_key_check(settings_factory, make_engine):
    app = create_app(settings_factory(api_key="k", cors_origins=["https://studio.example"]), engine=make_engine())
    with TestClient(app) as c:
        preflight = c.options(
            "/v1/chat/completions",
            headers={
                "Origin": "https://studio.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://studio.example"
        other = c.options(
            "/v1/chat/completions", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in other.headers


def test_request_log_defaults_to_a_file_per_port(monkeypatch, tmp_path):
    from ministudio_serve.settings import ServeSettings

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ServeSettings(port=8123).request_log_path == tmp_path / "ministudio" / "serve-8123" / "requests.sqlite"
