"""POST /v1/embeddings with the packaged all-MiniLM-L6-v2: bodies validate against OpenAI's schemas, similar
sentences score closer than unrelated ones, base64 and token arrays, batching, errors, metrics, and the openai SDK."""

from __future__ import annotations

import base64
import math
import struct

import pytest
from tests.helpers.openai_schema import assert_openai

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # unit vectors


def embed(client, inputs, **extra):
    reply = client.post("/v1/embeddings", json={"model": MODEL, "input": inputs, **extra})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_one_string_validates_and_is_a_unit_vector_with_usage(client):
    body = embed(client, "The quick brown fox jumps over the lazy dog.")
    assert_openai("CreateEmbeddingResponse", body)
    assert body["model"] == MODEL and len(body["data"]) == 1
    vector = body["data"][0]["embedding"]
    assert len(vector) == 384 and math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-4)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == 12  # 10 words + [CLS] [SEP]


def test_similar_sentences_score_closer_than_unrelated_ones(client):
    body = embed(
        client,
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The stock market fell sharply today.",
            "Shares dropped steeply on Wall Street.",
        ],
    )
    assert_openai("CreateEmbeddingResponse", body)
    v = [d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])]
    assert cosine(v[0], v[1]) > 0.6 > 0.2 > cosine(v[0], v[2])
    assert cosine(v[2], v[3]) > cosine(v[1], v[3]) + 0.3


def test_base64_is_the_same_vector_as_little_endian_float32(client):
    text = "Embeddings as base64"
    floats = embed(client, text)["data"][0]["embedding"]
    packed = embed(client, text, encoding_format="base64")["data"][0]["embedding"]
    decoded = struct.unpack("<384f", base64.b64decode(packed))
    assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) for a, b in zip(decoded, floats, strict=True))


def test_token_arrays_embed_like_their_text(client):
    text = "Token arrays are accepted too."
    by_text = embed(client, text)["data"][0]["embedding"]
    ids = client.app.state.server.tasks.embedder.tokenizer(text)["input_ids"]
    one = embed(client, ids)
    many = embed(client, [ids, ids[:4]])
    assert_openai("CreateEmbeddingResponse", one)
    assert cosine(one["data"][0]["embedding"], by_text) > 0.9999
    assert len(many["data"]) == 2 and many["usage"]["prompt_tokens"] == len(ids) + 4


def test_a_request_of_many_inputs_runs_in_batches_and_keeps_order(client):
    embedder = client.app.state.server.tasks.embedder
    texts = [f"sentence number {i} about {'cats' if i % 2 else 'stocks'}" for i in range(20)]
    singles = [embed(client, t)["data"][0]["embedding"] for t in texts[:3]]
    before = embedder._batcher.batches
    body = embed(client, texts)
    assert embedder._batcher.batches - before == 3  # 20 inputs, MAX_BATCH_SIZE 8
    assert [d["index"] for d in body["data"]] == list(range(20))
    for single, batched in zip(singles, body["data"][:3], strict=True):
        assert cosine(single, batched["embedding"]) > 0.9999  # padding inside a batch changes nothing


def test_alias_and_metrics(client):
    reply = client.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "hello"})
    assert reply.status_code == 200 and reply.json()["model"] == MODEL
    text = client.get("/metrics").text
    assert f'ministudio_task_requests_total{{model="{MODEL}",status="success",version="v1"}} 1.0' in text
    assert f'ministudio_task_model_loaded{{model="{MODEL}",version="v1"}} 1.0' in text


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "text-embedding-3-small", "input": "x"}, 404, "model"),
        ({"model": MODEL, "input": []}, 400, "input"),
        ({"model": MODEL, "input": ""}, 400, "input"),
        ({"model": MODEL, "input": ["ok", "  "]}, 400, "input"),
        ({"model": MODEL, "input": [1, 99999999]}, 400, "input"),
        ({"model": MODEL, "input": "x", "dimensions": 128}, 400, "dimensions"),
        ({"model": MODEL, "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"model": MODEL, "input": [["a"], 3]}, 400, "input"),
        ({"input": "x"}, 400, "model"),
    ],
)
def test_bad_requests_get_openai_errors(client, body, status, param):
    reply = client.post("/v1/embeddings", json=body)
    assert reply.status_code == status, reply.text
    assert_openai("ErrorResponse", reply.json())
    assert reply.json()["error"]["param"].split(".")[0] == param  # pydantic names the union member it tried
    assert embed(client, "still fine")["data"]


def test_openai_sdk_creates_embeddings(client):
    from openai import OpenAI

    sdk = OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    result = sdk.embeddings.create(model=MODEL, input=["first text", "second text"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 384
    assert result.usage.prompt_tokens == result.usage.total_tokens > 0
    packed = sdk.embeddings.create(model=MODEL, input="first text", encoding_format="base64")
    assert isinstance(packed.data[0].embedding, str)
