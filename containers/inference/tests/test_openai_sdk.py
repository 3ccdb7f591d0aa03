"""The official openai SDK against the server run under uvicorn on a free port: chat, stream, completions, models."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from functions.local.procs import free_port
from tests.helpers.tiny_models import BASE

from ministudio_serve.app import create_app


@pytest.fixture
def base_url(settings_factory, make_engine) -> Iterator[str]:
    port = free_port()
    app = create_app(settings_factory(api_key="k-123", port=port), engine=make_engine())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(10)


def test_openai_sdk_chat_stream_completions_models(base_url):
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="k-123", max_retries=0)
    chat = client.chat.completions.create(
        model=BASE, messages=[{"role": "user", "content": "Hi"}], max_tokens=5, temperature=0, seed=1
    )
    assert chat.object == "chat.completion" and chat.usage is not None and chat.usage.completion_tokens >= 1
    text = chat.choices[0].message.content

    stream = client.chat.completions.create(
        model=BASE,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=5,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == chat.usage.completion_tokens

    completion = client.completions.create(model=BASE, prompt="Once", max_tokens=3)
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert [m.id for m in client.models.list()] == [BASE]


def test_openai_sdk_sees_auth_and_not_found_errors(base_url):
    import openai

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
    client = openai.OpenAI(base_url=base_url, api_key="k-123", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found"
