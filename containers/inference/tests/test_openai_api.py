"""/v1 routes: every body (streamed chunks and errors included) validates against OpenAI's own schemas."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.helpers.openai_schema import assert_openai
from tests.helpers.tiny_models import BASE

CHAT = {"model": BASE, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 6, "temperature": 0}


def _events(response: Any) -> list[str]:
    lines = [line for line in response.text.split("\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    return [line[len("data: ") :] for line in lines]


def test_chat_completion_validates_and_reports_usage(client):
    reply = client.post("/v1/chat/completions", json=CHAT)
    assert reply.status_code == 200
    body = reply.json()
    assert_openai("CreateChatCompletionResponse", body)
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 5 and 1 <= usage["completion_tokens"] <= 6
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_chat_stream_chunks_validate_and_end_with_usage_and_done(client):
    reply = client.post(
        "/v1/chat/completions", json={**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = _events(reply)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        assert_openai("CreateChatCompletionStreamResponse", chunk)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1
    assert len({c["id"] for c in chunks}) == 1
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert streamed == client.post("/v1/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]


def test_completion_and_its_stream_validate(client):
    body = {"model": BASE, "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0}
    reply = client.post("/v1/completions", json=body)
    assert reply.status_code == 200
    assert_openai("CreateCompletionResponse", reply.json())
    assert reply.json()["usage"]["completion_tokens"] >= 1
    stream = client.post("/v1/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}})
    events = _events(stream)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        if chunk["choices"] and chunk["choices"][0]["finish_reason"] is None:
            # OpenAI's streams send finish_reason null until the last chunk, though this schema has no null.
            chunk = {**chunk, "choices": [{**chunk["choices"][0], "finish_reason": "length"}]}
        assert_openai("CreateCompletionResponse", chunk)
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert text == reply.json()["choices"][0]["text"]
    assert chunks[-1]["usage"]["total_tokens"] == reply.json()["usage"]["total_tokens"]


def test_completion_takes_several_prompts_and_token_ids(client):
    reply = client.post("/v1/completions", json={"model": BASE, "prompt": ["a", "b c"], "max_tokens": 3})
    assert_openai("CreateCompletionResponse", reply.json())
    assert [c["index"] for c in reply.json()["choices"]] == [0, 1]
    ids = client.post("/v1/completions", json={"model": BASE, "prompt": [1, 2, 3, 4], "max_tokens": 2})
    assert ids.status_code == 200 and ids.json()["usage"]["prompt_tokens"] == 4


def test_models_list_validates(client):
    body = client.get("/v1/models").json()
    assert_openai("ListModelsResponse", body)
    assert [m["id"] for m in body["data"]] == [BASE]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({**CHAT, "model": "nope"}, 404, "does not exist"),
        ({**CHAT, "temperature": 3}, 400, "temperature"),
        ({**CHAT, "n": 2}, 400, "n=1"),
        ({**CHAT, "messages": []}, 400, "messages"),
        ({**CHAT, "max_tokens": 10_000}, 400, "maximum context length"),
        ({"model": BASE}, 400, "messages"),
        ({**CHAT, "messages": [{"role": "user", "content": "word " * 400}]}, 400, "maximum context length"),
    ],
)
def test_bad_requests_get_openai_errors_never_500(client, body, status, fragment):
    reply = client.post("/v1/chat/completions", json=body)
    assert reply.status_code == status, reply.text
    assert_openai("ErrorResponse", reply.json())
    assert fragment in reply.json()["error"]["message"]
    assert reply.headers["x-request-id"]


def test_malformed_json_is_a_400(client):
    reply = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 400
    assert_openai("ErrorResponse", reply.json())


def test_sagemaker_invocations_pick_the_adapter_from_the_header(client, adapter_factory):
    assert client.get("/ping").status_code == 200
    client.post("/v1/load_lora_adapter", json={"lora_name": "tuned", "lora_path": str(adapter_factory("t", seed=4))})
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "temperature": 0}
    base = client.post("/invocations", json=body)
    tuned = client.post("/invocations", json=body, headers={"X-Amzn-SageMaker-Target-Model": "tuned"})
    assert base.status_code == tuned.status_code == 200
    assert_openai("CreateChatCompletionResponse", base.json())
    assert base.json()["model"] == BASE and tuned.json()["model"] == "tuned"
    assert base.json()["choices"][0]["message"]["content"] != tuned.json()["choices"][0]["message"]["content"]
    completion = client.post("/invocations", json={"prompt": "x", "max_tokens": 2, "TargetModel": "tuned"})
    assert completion.status_code == 200 and completion.json()["model"] == "tuned"
    bad = client.post("/invocations", json={"neither": 1})
    assert bad.status_code == 400
    assert_openai("ErrorResponse", bad.json())


def test_the_schema_check_itself_rejects_a_wrong_body():
    with pytest.raises(AssertionError, match="created"):
        assert_openai("ListModelsResponse", {"object": "list", "data": [{"id": "m", "object": "model"}]})


def test_adapters_named_at_start_are_served(settings_factory, make_engine, adapter_factory):
    from fastapi.testclient import TestClient

    from ministudio_serve.app import create_app

    settings = settings_factory(lora_modules=[f"support={adapter_factory('support', seed=8)}"])
    with TestClient(create_app(settings, engine=make_engine())) as c:
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == [BASE, "support"]
        card = c.get("/v1/models").json()["data"][1]
        assert card["parent"] == BASE
