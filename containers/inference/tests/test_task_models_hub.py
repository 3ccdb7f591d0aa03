"""The seed's own model kinds loaded by name through SUMMARIZER_MODEL / SENTIMENT_MODEL / GENERATOR_MODEL: tiny random
BART (seq2seq), BERT classifier and Llama saved as local directories stand in for bart-large-cnn, twitter-roberta
and gpt2, through the same transformers loading code a hub id takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from tests.helpers.tiny_models import tiny_model

from ministudio_serve.app import create_app
from ministudio_serve.services.embeddings import builtin_dir


@pytest.fixture(scope="module")
def hub_dirs(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> dict[str, Path]:
    from transformers import (
        AutoTokenizer,
        BartConfig,
        BartForConditionalGeneration,
        BertConfig,
        BertForSequenceClassification,
    )

    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    bart = BartForConditionalGeneration(
        BartConfig(
            vocab_size=len(tokenizer),
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=256,
            pad_token_id=eos,
            eos_token_id=eos,
            bos_token_id=1,
            decoder_start_token_id=eos,
            forced_eos_token_id=None,
        )
    )
    bert_tokenizer = AutoTokenizer.from_pretrained(str(builtin_dir()))
    labels = {0: "NEGATIVE", 1: "NEUTRAL", 2: "POSITIVE"}
    bert = BertForSequenceClassification(
        BertConfig(
            vocab_size=len(bert_tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=3,
            id2label=labels,
            label2id={v: k for k, v in labels.items()},
        )
    )
    llama = tiny_model(len(tokenizer))
    dirs = {"summarizer": root / "bart", "sentiment": root / "bert", "generator": root / "llama"}
    for key, model, tok in (
        ("summarizer", bart, tokenizer),
        ("sentiment", bert, bert_tokenizer),
        ("generator", llama, tokenizer),
    ):
        model.save_pretrained(str(dirs[key]))
        tok.save_pretrained(str(dirs[key]))
    return dirs


@pytest.fixture
def hub_client(settings_factory, make_engine, hub_dirs):
    settings = settings_factory(
        summarizer_model=str(hub_dirs["summarizer"]),
        sentiment_model=str(hub_dirs["sentiment"]),
        generator_model=str(hub_dirs["generator"]),
    )
    with TestClient(create_app(settings, engine=make_engine())) as client:
        yield client


def test_models_name_the_directories_they_load(hub_client, hub_dirs):
    by_name = {m["name"]: m for m in hub_client.get("/models").json()["models"]}
    for name, where in hub_dirs.items():
        assert by_name[name]["backing_model"] == str(where)
        assert by_name[name]["versions"] == ["v1"]


def test_seq2seq_summarizer_honours_both_lengths(hub_client):
    ask = {"text": "A long text about many things that should become shorter.", "model": "summarizer"}
    body = hub_client.post("/infer", json={**ask, "parameters": {"max_length": 9, "min_length": 6}}).json()
    assert body["success"] and body["model_used"] == "summarizer:v1" and isinstance(body["result"], str)
    assert 6 <= body["metadata"]["completion_tokens"] <= 9
    tight = hub_client.post("/infer", json={**ask, "parameters": {"max_length": 3}}).json()
    assert tight["metadata"]["completion_tokens"] <= 3


def test_classifier_reports_label_confidence_and_all_scores(hub_client):
    body = hub_client.post("/infer", json={"text": "I love it", "model": "sentiment"}).json()
    result = body["result"]
    assert set(result["scores"]) == {"negative", "neutral", "positive"}
    assert result["label"] == max(result["scores"], key=result["scores"].get)
    assert result["confidence"] == result["scores"][result["label"]]
    assert abs(sum(result["scores"].values()) - 1) < 1e-3


def test_causal_generator_batches_mixed_parameters(hub_client):
    generator = hub_client.app.state.server.tasks.models["generator"]["v1"]
    items = [
        {"text": "Once upon a time", "model": "generator", "parameters": {"max_length": 4, "temperature": 0}},
        {"text": "The future of AI is", "model": "generator", "parameters": {"max_length": 4, "temperature": 0}},
        {"text": "Hello", "model": "generator", "parameters": {"max_length": 5, "num_return_sequences": 2, "seed": 3}},
        {"text": "Great product", "model": "sentiment"},
    ]
    results = hub_client.post("/infer/batch", json={"requests": items}).json()["results"]
    assert all(r["success"] for r in results)
    assert isinstance(results[0]["result"], str) and results[0]["metadata"]["completion_tokens"] <= 4
    assert isinstance(results[2]["result"], list) and len(results[2]["result"]) == 2
    assert generator._batcher.batches == 1  # three generator items, one padded pass (grouped by parameters)
    alone = hub_client.post("/infer", json=items[1]).json()["result"]
    assert alone == results[1]["result"]  # left padding beside a longer prompt changes nothing (greedy)


def test_hub_models_unload_on_shutdown(settings_factory, make_engine, hub_dirs):
    app = create_app(settings_factory(sentiment_model=str(hub_dirs["sentiment"])), engine=make_engine())
    with TestClient(app) as c:
        assert c.post("/infer", json={"text": "fine", "model": "sentiment"}).status_code == 200
    sentiment = app.state.server.tasks.models["sentiment"]["v1"]
    assert sentiment.model is None and sentiment.tokenizer is None and not sentiment.loaded


def test_a_task_model_has_versions_latest_by_default_named_when_named(settings_factory, make_engine, hub_dirs):
    # Given summarizer v1 (the builtin, on the LLM) and v2 registered from a folder at startup
    settings = settings_factory(task_model_versions=[f"summarizer:v2={hub_dirs['summarizer']}"])
    with TestClient(create_app(settings, engine=make_engine())) as client:
        listed = [m for m in client.get("/models").json()["models"] if m["name"] == "summarizer"]
        assert [(m["version"], m["latest"]) for m in listed] == [("v1", False), ("v2", True)]
        assert listed[1]["backing_model"] == str(hub_dirs["summarizer"]) and listed[0]["versions"] == ["v1", "v2"]
        ask = {"text": "A long text about many things that should become shorter.", "model": "summarizer"}
        latest = client.post("/infer", json={**ask, "parameters": {"max_length": 5}}).json()
        assert latest["success"] and latest["model_used"] == "summarizer:v2"
        assert latest["metadata"]["backing_model"] == str(hub_dirs["summarizer"])
        named = client.post("/infer", json={**ask, "version": "v1", "parameters": {"max_length": 5}}).json()
        assert named["success"] and named["model_used"] == "summarizer:v1"
        missing = client.post("/infer", json={**ask, "version": "v7"})
        assert missing.status_code == 404 and "v1, v2" in missing.json()["message"]

        # v10 registered at run time from the same folder: the newest by number, not by text
        added = client.post("/models/summarizer/versions", json={"version": "v10", "path": str(hub_dirs["summarizer"])})
        assert added.status_code == 201, added.text
        assert added.json()["latest"] is True and added.json()["versions"] == ["v1", "v2", "v10"]
        assert client.post("/infer", json=ask).json()["model_used"] == "summarizer:v10"
        again = client.post("/models/summarizer/versions", json={"version": "v2", "path": "/elsewhere"})
        assert again.status_code == 409
        bad = client.post("/models/nosuch/versions", json={"version": "v2", "path": "/elsewhere"})
        assert bad.status_code == 400


def test_task_model_version_entries_are_checked():
    from ministudio_serve.settings import ServeSettings

    with pytest.raises(ValueError, match="name:version=path"):
        ServeSettings(task_model_versions=["summarizer=/models/v2"])
