"""Seed 003's payloads on the real SmolLM2-135M-Instruct (the offline summarizer and generator): the summary is
real text about the input, within the length bounds asked. Short generations only."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from tests.helpers.tiny_models import BASE

from ministudio_serve.app import create_app
from ministudio_serve.settings import ServeSettings

pytestmark = pytest.mark.slow
TEXT = (
    "The city council voted on Tuesday to build a new public library downtown. The library will open in 2027, "
    "cost 40 million dollars and hold two hundred thousand books, a cafe and rooms for students."
)


@pytest.fixture(scope="module")
def real_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = ServeSettings(model=BASE, request_log=tmp_path_factory.mktemp("real") / "requests.sqlite")
    with TestClient(create_app(settings)) as client:
        for _ in range(3000):
            if client.get("/ready").status_code == 200:
                break
            time.sleep(0.1)
        assert client.get("/ready").status_code == 200, client.get("/ready").json()
        yield client


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_summary_is_about_the_text_and_within_its_bounds(real_client):
    ask = {"text": TEXT, "model": "summarizer", "version": "v1", "parameters": {"max_length": 40, "min_length": 12}}
    body = real_client.post("/infer", json=ask).json()
    assert body["success"] and body["model_used"] == "summarizer:v1"
    assert 12 <= body["metadata"]["completion_tokens"] <= 40
    assert len(body["result"]) < len(TEXT)
    assert len(words(body["result"]) & {"library", "council", "city", "books", "downtown"}) >= 1, body["result"]


def test_generator_continues_the_seed_prompt_and_stops_at_max_length(real_client):
    ask = {"text": "The future of AI is", "model": "generator", "version": "v1", "parameters": {"max_length": 12}}
    body = real_client.post("/infer", json=ask).json()
    assert body["success"] and body["model_used"] == "generator:v1"
    assert 1 <= body["metadata"]["completion_tokens"] <= 12 and body["result"].strip()


def test_mixed_batch_on_the_real_model(real_client):
    items = [
        {"text": TEXT, "model": "summarizer", "parameters": {"max_length": 24}},
        {"text": "I love this AI inference backend! It works perfectly.", "model": "sentiment"},
        {"text": "Once upon a time", "model": "generator", "parameters": {"max_length": 8}},
    ]
    results = real_client.post("/infer/batch", json={"requests": items}).json()["results"]
    assert [r["success"] for r in results] == [True, True, True]
    assert results[1]["result"]["label"] == "positive"
