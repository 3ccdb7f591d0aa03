"""`ministudio chat` prints an OpenAI SSE stream piece by piece (a recorded stream through httpx's MockTransport),
`deploy --wait` polls until ready, and `jobs watch` on a terminal draws rich's bar with loss."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest

from functions.cli import main
from functions.cli.chat import sse_deltas

RECORDED = (
    'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
    'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
    ": keep-alive\n\n"
    'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo!"}}]}\n\n'
    'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    "data: [DONE]\n\n"
)


def _run(handler: Any, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    http = httpx.Client(base_url="http://api.test", transport=httpx.MockTransport(handler))
    return main([*argv, "--api-key", "sk-test"], out=out, http=http), out.getvalue()


def test_chat_streams_the_pieces_and_sends_the_options() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer sk-test"
        seen.append(json.loads(request.content))
        return httpx.Response(200, text=RECORDED, headers={"content-type": "text/event-stream"})

    argv = ["chat", "ft:m", "hi", "--system", "be brief", "--temperature", "0.2", "--max-tokens", "5"]
    code, out = _run(handler, *argv)
    assert code == 0 and out == "Hello!\n"
    assert seen == [
        {
            "model": "ft:m",
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            "temperature": 0.2,
            "max_tokens": 5,
            "stream": True,
        }
    ]


def test_chat_errors_print_the_api_message(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"message": "model 'x' is not deployed", "type": "invalid"}})

    assert _run(handler, "chat", "x", "hi") == (1, "")
    assert capsys.readouterr().err == "error 404: model 'x' is not deployed\n"


def test_an_error_event_inside_the_stream_stops_with_its_message() -> None:
    lines = ['data: {"choices":[{"delta":{"content":"a"}}]}', 'data: {"error":{"message":"upstream died"}}']
    pieces = sse_deltas(lines)
    assert next(pieces) == "a"
    with pytest.raises(Exception, match="upstream died"):
        next(pieces)


def test_deploy_wait_polls_until_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("functions.cli.models.time.sleep", lambda _: None)
    states = iter(["pending", "deploying", "deploying", "ready"])

    def handler(request: httpx.Request) -> httpx.Response:
        body = {"id": "dep-1", "model": "m", "status": next(states)}
        return httpx.Response(200, json=body)

    assert _run(handler, "deploy", "m", "--wait") == (0, "dep-1  m  ready\n")
    states = iter(["pending", "failed"])
    code, out = _run(handler, "deploy", "m", "--wait", "--json")
    assert code == 1 and json.loads(out)["status"] == "failed"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_watch_on_a_terminal_draws_rich_progress_with_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.cli.jobs import watch

    monkeypatch.setattr("functions.cli.jobs.time.sleep", lambda _: None)
    states: list[dict[str, Any]] = [
        {
            "id": "j",
            "status": "running",
            "progress": {"step": 5, "total_steps": 20, "loss": 1.2345, "eta_seconds": 42.5},
        },
        {"id": "j", "status": "succeeded", "fine_tuned_model": "ft:m:acme::j"},
    ]

    class Api:
        def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            return states.pop(0)

    out = Tty()
    assert watch(Api(), "j", 0, out) == 0  # type: ignore[arg-type]
    drawn = out.getvalue()
    assert "5/20" in drawn and "loss 1.2345" in drawn and "eta 42s" in drawn and "━" in drawn  # rich's bar, not '#'
    assert drawn.rstrip().endswith("j succeeded: ft:m:acme::j")
