"""Seed 003's task models on the offline defaults: the seed's payloads for summarizer, sentiment and generator,
DEFAULT_MODEL, bad input that loses nothing, mixed `/infer/batch`, dynamic batching, per-model metrics, and loading
once / unloading on shutdown. The LLM is the tiny random Llama here (test_task_models_real.py has SmolLM2)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ministudio_serve.app import create_app

SEED_ERROR_KEYS = {"error", "message", "details", "timestamp", "request_id"}
SEED_RESPONSE_KEYS = {"success", "result", "model_used", "latency_ms", "request_id", "timestamp", "metadata"}
SUMMARIZE = {
    "text": "The quick brown fox jumps over the lazy dog. This is a sample text that needs to be summarized to "
    "demonstrate the summarization capabilities of the AI inference backend platform.",
    "model": "summarizer",
    "version": "v1",
}
SENTIMENT = {"text": "I love this AI inference backend! It works perfectly.", "model": "sentiment", "version": "v1"}
GENERATE = {"text": "The future of AI is", "model": "generator", "version": "v1", "parameters": {"max_length": 50}}


def samples(client: TestClient, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def metric(client: TestClient, name: str, **labels: str) -> float:
    return samples(client, name).get(tuple(sorted(labels.items())), 0.0)


def wait_loaded(client: TestClient, name: str) -> dict[str, Any]:
    for _ in range(300):
        entry = next(m for m in client.get("/models").json()["models"] if m["name"] == name)
        if entry["loaded"]:
            return entry
        time.sleep(0.05)
    raise AssertionError(f"{name} never loaded")


def test_models_lists_the_seed_names_versions_and_default(settings_factory, make_engine):
    app = create_app(settings_factory(preload_task_models=True), engine=make_engine())
    with TestClient(app) as client:
        _lists_and_preloads(client)


def _lists_and_preloads(client: TestClient) -> None:
    body = client.get("/models").json()
    by_name = {m["name"]: m for m in body["models"]}
    assert {"summarizer", "sentiment", "generator"} <= set(by_name)
    assert body["default_model"] == "summarizer" and by_name["summarizer"]["default"] is True
    assert by_name["summarizer"]["parameters"] == ["max_length", "min_length", "seed", "temperature"]
    assert {"max_length", "num_return_sequences"} <= set(by_name["generator"]["parameters"])
    assert all(by_name[n]["versions"] == ["v1"] for n in ("summarizer", "sentiment", "generator"))
    assert by_name["sentence-transformers/all-MiniLM-L6-v2"]["model_type"] == "embedding"
    sentiment = wait_loaded(client, "sentiment")  # preloaded at startup, without a request
    assert sentiment["load_time_ms"] > 0 and sentiment["backing_model"].startswith("vaderSentiment")


def test_seed_payloads_answer_with_the_seed_shape(client):
    summary = client.post("/infer", json=SUMMARIZE)
    assert summary.status_code == 200, summary.text
    body = summary.json()
    assert set(body) == SEED_RESPONSE_KEYS and body["success"] is True
    assert body["model_used"] == "summarizer:v1" and body["metadata"]["model_type"] == "summarizer"
    assert isinstance(body["result"], str) and body["request_id"] == summary.headers["x-request-id"]
    assert body["timestamp"].endswith("Z") and body["latency_ms"] > 0

    positive = client.post("/infer", json=SENTIMENT).json()
    assert positive["model_used"] == "sentiment:v1"
    assert positive["result"]["label"] == "positive" and positive["result"]["confidence"] > 0.5
    negative = client.post("/infer", json={**SENTIMENT, "text": "This is terrible, I hate it."}).json()
    assert negative["result"]["label"] == "negative"
    neutral = client.post("/infer", json={**SENTIMENT, "text": "The report is on the table."}).json()
    assert neutral["result"]["label"] == "neutral"

    generated = client.post("/infer", json=GENERATE).json()
    assert generated["model_used"] == "generator:v1" and isinstance(generated["result"], str)
    assert 1 <= generated["metadata"]["completion_tokens"] <= 50


def test_length_parameters_bound_what_the_llm_writes(client):
    short = client.post("/infer", json={**SUMMARIZE, "parameters": {"max_length": 6}}).json()
    assert short["metadata"]["completion_tokens"] <= 6
    gen = client.post("/infer", json={**GENERATE, "parameters": {"max_length": 3}}).json()
    assert gen["metadata"]["completion_tokens"] <= 3


def test_min_length_keeps_eos_away_until_reached(settings_factory, make_engine):
    # Given an LLM that wants to stop at once (EOS always the likeliest token)
    engine = make_engine()
    eos = engine.tokenizer.eos_token_id

    def eos_first(module: Any, args: Any, output: Any) -> Any:
        output[..., eos] += 1e4
        return output

    engine.model.lm_head.register_forward_hook(eos_first)
    with TestClient(create_app(settings_factory(), engine=engine)) as c:
        # When the summarizer is asked for no minimum, then for 7 tokens at least
        free = c.post("/infer", json={**SUMMARIZE, "parameters": {"max_length": 20}}).json()
        bounded = c.post("/infer", json={**SUMMARIZE, "parameters": {"max_length": 20, "min_length": 7}}).json()
    # Then EOS ends the first at once, and the second only once 7 tokens are written
    assert free["metadata"]["completion_tokens"] == 1 and free["result"] == ""
    assert bounded["metadata"]["completion_tokens"] == 8 and bounded["metadata"]["finish_reason"] == "stop"
    assert bounded["result"] != ""


def test_num_return_sequences_gives_reproducible_distinct_texts(client):
    ask = {**GENERATE, "parameters": {"max_length": 6, "num_return_sequences": 3, "seed": 7, "temperature": 1.0}}
    first = client.post("/infer", json=ask).json()
    assert isinstance(first["result"], list) and len(first["result"]) == 3
    assert len(set(first["result"])) > 1
    assert client.post("/infer", json=ask).json()["result"] == first["result"]


def test_default_model_answers_when_the_request_names_none(settings_factory, make_engine):
    with TestClient(create_app(settings_factory(), engine=make_engine())) as c:
        assert c.post("/infer", json={"text": SENTIMENT["text"]}).json()["model_used"] == "summarizer:v1"
    with TestClient(create_app(settings_factory(default_task_model="sentiment"), engine=make_engine())) as c:
        body = c.post("/infer", json={"text": SENTIMENT["text"]}).json()
        assert body["model_used"] == "sentiment:v1" and body["result"]["label"] == "positive"
        assert c.get("/models").json()["default_model"] == "sentiment"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"text": "x", "model": "translator"}, 404, "does not exist"),
        ({"text": "x", "model": "summarizer", "version": "v2"}, 404, "no version 'v2'"),
        ({"text": "x", "model": "summarizer", "parameters": {"max_length": 0}}, 400, "max_length"),
        ({"text": "x", "model": "summarizer", "parameters": {"max_length": "50"}}, 400, "max_length"),
        ({"text": "x", "model": "summarizer", "parameters": {"min_length": 9, "max_length": 5}}, 400, "min_length"),
        ({"text": "x", "model": "summarizer", "parameters": {"beams": 4}}, 400, "accepts: max_length"),
        ({"text": "x", "model": "sentiment", "parameters": {"max_length": 5}}, 400, "accepts: none"),
        ({"text": "x", "model": "generator", "parameters": {"num_return_sequences": 9}}, 400, "num_return"),
        (
            {"text": "x", "model": "generator", "parameters": {"num_return_sequences": 2, "temperature": 0}},
            400,
            "greedy",
        ),
        ({"text": "", "model": "sentiment"}, 400, "text"),
    ],
)
def test_bad_input_gets_the_seed_error_and_the_server_goes_on(client, body, status, fragment):
    reply = client.post("/infer", json=body)
    assert reply.status_code == status
    assert set(reply.json()) == SEED_ERROR_KEYS and fragment in reply.json()["message"]
    assert reply.json()["request_id"] == reply.headers["x-request-id"]
    assert client.post("/infer", json=SENTIMENT).status_code == 200


def test_mixed_batch_answers_every_item_in_order_and_keeps_good_ones(client):
    items = [
        {"text": "First text to process", "model": "summarizer", "parameters": {"max_length": 5}},
        {"text": "Second text to process", "model": "sentiment"},
        {"text": "Once upon a time", "model": "generator", "parameters": {"max_length": 4}},
        {"text": "x", "model": "translator"},
        {"text": "x", "model": "sentiment", "version": "v3"},
        {"text": "x", "model": "generator", "parameters": {"max_length": -1}},
        {"text": "What a wonderful day"},
    ]
    reply = client.post("/infer/batch", json={"requests": items})
    assert reply.status_code == 200
    body = reply.json()
    results = body["results"]
    assert body["batch_size"] == 7 and body["success"] is False
    assert [r["success"] for r in results] == [True, True, True, False, False, False, True]
    assert [r["model_used"] for r in results] == [
        "summarizer:v1",
        "sentiment:v1",
        "generator:v1",
        "translator:v1",
        "sentiment:v3",
        "generator:v1",
        "summarizer:v1",
    ]
    assert [r.get("status") for r in results[3:6]] == [404, 404, 400]
    assert results[1]["result"]["label"] == "neutral" and results[2]["metadata"]["completion_tokens"] <= 4
    assert all(r["request_id"] == f"{body['request_id']}-{i}" for i, r in enumerate(results))


def test_sentiment_requests_share_a_batch(client):
    tasks = client.app.state.server.tasks
    client.post("/infer", json=SENTIMENT)  # loads it (this client does not preload)
    wait_loaded(client, "sentiment")
    batcher = tasks.models["sentiment"]["v1"]._batcher
    before = batcher.batches
    reply = client.post(
        "/infer/batch", json={"requests": [{"text": f"good {i}", "model": "sentiment"} for i in range(8)]}
    )
    assert all(r["success"] for r in reply.json()["results"])
    assert batcher.batches - before == 1  # eight items, MAX_BATCH_SIZE 8: one pass


def test_metrics_count_requests_failures_latency_and_load_time_per_model(client):
    client.post("/infer", json=SENTIMENT)
    client.post("/infer", json={**SUMMARIZE, "parameters": {"max_length": 3}})
    client.post("/infer", json={**SUMMARIZE, "parameters": {"max_length": 0}})
    client.post("/infer", json={**SUMMARIZE, "version": "v5"})
    wait_loaded(client, "sentiment")
    m = "ministudio_task_requests_total"
    assert metric(client, m, model="sentiment", version="v1", status="success") == 1
    assert metric(client, m, model="summarizer", version="v1", status="success") == 1
    assert metric(client, m, model="summarizer", version="v1", status="failure") == 1
    assert metric(client, m, model="summarizer", version="unknown", status="failure") == 1
    assert metric(client, "ministudio_task_latency_seconds_count", model="summarizer", version="v1") == 2
    assert metric(client, "ministudio_task_latency_seconds_sum", model="sentiment", version="v1") > 0
    assert metric(client, "ministudio_task_model_load_seconds", model="sentiment", version="v1") > 0
    assert metric(client, "ministudio_task_model_loaded", model="generator", version="v1") == 1
    assert not any(dict(k).get("model") == "translator" for k in samples(client, m))


def test_models_load_once_and_unload_on_shutdown(settings_factory, make_engine, monkeypatch):
    from vaderSentiment import vaderSentiment

    built = []
    real = vaderSentiment.SentimentIntensityAnalyzer

    def counting() -> Any:
        built.append(1)
        return real()

    monkeypatch.setattr(vaderSentiment, "SentimentIntensityAnalyzer", counting)
    app = create_app(settings_factory(preload_task_models=False), engine=make_engine())
    tasks = app.state.server.tasks
    with TestClient(app) as c:
        assert next(m for m in c.get("/models").json()["models"] if m["name"] == "sentiment")["loaded"] is False
        for _ in range(3):
            assert c.post("/infer", json=SENTIMENT).status_code == 200
        assert built == [1] and wait_loaded(c, "sentiment")["loaded"] is True
    sentiment = tasks.models["sentiment"]["v1"]
    assert sentiment.closed and sentiment._analyzer is None and tasks.embedder.model is None
    assert not any(m.loaded for m in tasks.all())


def test_a_model_that_fails_to_load_answers_503_and_the_rest_still_work(settings_factory, make_engine, tmp_path):
    settings = settings_factory(sentiment_model=str(tmp_path / "missing"), preload_task_models=False)
    with TestClient(create_app(settings, engine=make_engine()), raise_server_exceptions=False) as c:
        reply = c.post("/infer", json=SENTIMENT)
        assert reply.status_code == 503 and "failed to load" in reply.json()["message"]
        ok = c.post("/infer", json={**SUMMARIZE, "parameters": {"max_length": 3}})
        assert ok.status_code == 200
