"""What the proxy sends upstream and when it logs: the caller's bytes pass unchanged when they already name the routed
model (no re-encoding of a long prompt), never when a second `model` key could be read by another parser; SageMaker's
refusal of a stream is an HTTP error, and its usage log is written after the answer, off the event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.core.settings import Settings
from functions.deployments import proxy, proxy_errors
from functions.deployments.proxy_body import upstream_body
from functions.deployments.routing import Route
from tests.helpers.deployment_store import LogStore

MINE = "ft:HuggingFaceTB/SmolLM2-135M-Instruct:acme:s:ftjob-acme"
THEIRS = "ft:HuggingFaceTB/SmolLM2-135M-Instruct:globex:s:ftjob-globex"


def _as_parsed(raw: bytes) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(raw)  # what FastAPI hands the route
    return body


def test_a_body_that_names_the_routed_model_goes_as_the_caller_sent_it() -> None:
    raw = json.dumps({"model": MINE, "messages": [{"role": "user", "content": "x" * 10_000}]}).encode()
    payload, wants_usage = upstream_body(MINE, False, _as_parsed(raw), raw)
    assert payload is raw and wants_usage


def test_a_stream_asks_for_usage_without_re_encoding_and_hides_it_unless_asked() -> None:
    raw = b'  {"model": "%s", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}' % MINE.encode()
    payload, wants_usage = upstream_body(MINE, True, _as_parsed(raw), raw)
    assert not wants_usage
    assert json.loads(payload) == {**_as_parsed(raw), "stream_options": {"include_usage": True}}
    assert payload.endswith(raw[raw.index(b"{") + 1 :])  # the rest is the caller's bytes
    asked = b'{"model": "%s", "stream": true, "stream_options": {"include_usage": true}}' % MINE.encode()
    assert upstream_body(MINE, True, _as_parsed(asked), asked) == (asked, True)
    declined = b'{"model": "%s", "stream": true, "stream_options": {"include_usage": false}}' % MINE.encode()
    payload, wants_usage = upstream_body(MINE, True, _as_parsed(declined), declined)
    assert json.loads(payload)["stream_options"] == {"include_usage": True} and not wants_usage


@pytest.mark.parametrize(
    "raw",
    [
        # A second `model` key spelt with an escape: Python keeps the last, a parser keeping the first would serve
        # another tenant's adapter from the shared server.
        b'{"model": "%s", "mod\\u0065l": "%s", "messages": []}' % (THEIRS.encode(), MINE.encode()),
        b'{"model": "%s", "model": "%s", "messages": []}' % (THEIRS.encode(), MINE.encode()),
    ],
    ids=["escaped-duplicate", "plain-duplicate"],
)
def test_a_body_with_two_model_keys_is_re_encoded_with_the_routed_one_only(raw: bytes) -> None:
    payload, _ = upstream_body(MINE, False, _as_parsed(raw), raw)
    assert json.loads(payload)["model"] == MINE and THEIRS.encode() not in payload


def test_seed_bodies_get_the_routed_model_and_odd_stream_options_do_not_break_it() -> None:
    payload, _ = upstream_body(MINE, False, {"prompt": "Hi"}, None)
    assert json.loads(payload) == {"prompt": "Hi", "model": MINE}
    odd = b'{"model": "%s", "stream": true, "stream_options": "yes"}' % MINE.encode()
    payload, wants_usage = upstream_body(MINE, True, _as_parsed(odd), odd)
    assert json.loads(payload)["stream_options"] == {"include_usage": True} and not wants_usage


def _sagemaker_call(stream: bool) -> proxy.Call:
    route = Route("dep-1", MINE, "sagemaker", target="vllm-base-x", component="vllm-base-x-lora-1")
    return proxy.Call("acme", route, "/v1/chat/completions", "req-9", None, stream)


def test_sagemaker_refusing_a_stream_is_an_http_error_not_a_200(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.compute import sagemaker_invoke
    from functions.deployments import proxy_sagemaker

    def refused(*_: Any, **__: Any) -> Iterator[bytes]:
        raise sagemaker_invoke.InvokeError("vllm-base-x: ThrottlingException: slow down", 429)
        yield b""  # a generator, as the real one: the call happens on the first part

    monkeypatch.setattr(sagemaker_invoke, "invoke_stream", refused)
    store = LogStore()
    with pytest.raises(proxy_errors.UpstreamRejected) as caught:
        asyncio.run(proxy_sagemaker.forward(_sagemaker_call(True), b"{}", False, store, Settings()))  # type: ignore[arg-type]
    assert caught.value.status_code == 429 and caught.value.error_type == "rate_limit_error"
    assert [e.status_code for e in store.inference_logs.entries] == [429]


def test_sagemakers_answer_leaves_before_its_usage_log_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.compute import sagemaker_invoke
    from functions.deployments import proxy_sagemaker

    answer = {"id": "c", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    monkeypatch.setattr(sagemaker_invoke, "invoke", lambda *_, **__: json.dumps(answer).encode())
    store = LogStore()

    async def run() -> None:
        call = _sagemaker_call(False)
        response = await proxy_sagemaker.forward(call, b"{}", False, store, Settings())  # type: ignore[arg-type]
        assert json.loads(bytes(response.body)) == answer and store.inference_logs.entries == []
        assert response.background is not None and call.timing.upstream > 0
        await response.background()  # what Starlette runs, in a worker thread, once the answer has gone
        assert [(e.prompt_tokens, e.completion_tokens) for e in store.inference_logs.entries] == [(5, 2)]

    asyncio.run(run())
