"""Pure logic behind the request hardening: what an Idempotency-Key's fingerprint counts as the same request, and
the body-read timeout's behaviour at the ASGI level (idle time, not total time; never after the body; a response
already started is abandoned, not doubled)."""

from __future__ import annotations

import asyncio
from typing import Any

from functions.api.middleware import BodyTimeoutMiddleware
from functions.jobs.idempotency import FINGERPRINTED, request_fingerprint

Message = dict[str, Any]
BASE = {"model": "m", "training_file": "file-a", "hyperparameters": {"n_epochs": 2}, "seed": None}


def test_fingerprint_treats_auto_and_absent_and_empty_metadata_as_the_same_request() -> None:
    plain = request_fingerprint(**BASE)
    spelled_out = request_fingerprint(**{**BASE, "hyperparameters": {"n_epochs": 2, "batch_size": "auto"}}, metadata={})
    assert plain == spelled_out
    assert set(plain) == set(FINGERPRINTED)


def test_fingerprint_differs_exactly_in_the_fields_that_differ() -> None:
    plain = request_fingerprint(**BASE)
    changed = request_fingerprint(**{**BASE, "training_file": "file-b", "seed": 7})
    assert sorted(name for name in FINGERPRINTED if plain[name] != changed[name]) == ["seed", "training_file"]
    reordered = request_fingerprint(**{**BASE, "metadata": {"b": "2", "a": "1"}})
    assert reordered == request_fingerprint(**{**BASE, "metadata": {"a": "1", "b": "2"}})


def scope() -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/v1/files", "headers": []}


def run(app: Any, chunks: list[tuple[float, Message | None]], timeout: float = 0.2) -> list[Message]:
    """Drive the middleware: each chunk arrives after its delay (None: never arrives); returns what was sent."""
    sent: list[Message] = []
    pending = list(chunks)

    async def receive() -> Message:
        delay, message = pending.pop(0) if pending else (3600.0, None)
        await asyncio.sleep(delay if message is not None else 3600.0)
        assert message is not None
        return message

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        await asyncio.wait_for(BodyTimeoutMiddleware(app, lambda: timeout)(scope(), receive, send), 5)

    asyncio.run(main())
    return sent


def body(data: bytes, more: bool) -> Message:
    return {"type": "http.request", "body": data, "more_body": more}


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the whole body, answers, then waits for the client to go (as a streaming response does)."""
    data = b""
    while True:
        message = await receive()
        data += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": data})
    assert (await receive())["type"] == "http.disconnect"


def test_a_slow_body_that_keeps_arriving_is_not_cut_off_nor_is_the_wait_after_it() -> None:
    # Each chunk comes within the timeout though the whole takes longer; the disconnect comes long after the body
    chunks = [(0.1, body(b"a", True)), (0.1, body(b"b", True)), (0.1, body(b"c", False))]
    sent = run(echo_app, [*chunks, (0.5, {"type": "http.disconnect"})])
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"abc"


def test_a_stalled_body_is_a_408_that_closes_the_connection() -> None:
    sent = run(echo_app, [(0.0, body(b"a", True)), (0.0, None)])
    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    assert b"request_timeout" in sent[1]["body"]


def test_a_stall_after_the_response_started_ends_the_request_without_a_second_response() -> None:
    async def eager_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive()).get("more_body"):
            pass

    sent = run(eager_app, [(0.0, body(b"a", True)), (0.0, None)])
    assert [m["type"] for m in sent] == ["http.response.start"]
