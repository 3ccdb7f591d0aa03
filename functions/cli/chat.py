"""`ministudio chat MODEL PROMPT`: a chat completion streamed token by token (the API's OpenAI SSE stream)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from functions.cli.api import Api, ApiError, common_flags, dump, error_message


def register(sub: Any) -> None:
    chat = sub.add_parser("chat", parents=[common_flags()], help="chat with a deployed model, streaming its answer")
    chat.add_argument("model")
    chat.add_argument("prompt")
    chat.add_argument("--system", help="a system prompt")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--max-tokens", type=int)
    chat.set_defaults(handler=_chat)


def sse_deltas(lines: Iterable[str]) -> Iterator[str]:
    """The content pieces of an OpenAI chat-completion SSE stream, in order, until `data: [DONE]`; an `error` event
    becomes ApiError."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            raise ApiError(0, *error_message(event, 0))
        for choice in event.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                yield piece


def request_body(args: argparse.Namespace, stream: bool) -> dict[str, Any]:
    messages = [{"role": "system", "content": args.system}] if args.system else []
    body: dict[str, Any] = {"model": args.model, "messages": [*messages, {"role": "user", "content": args.prompt}]}
    if args.temperature is not None:
        body["temperature"] = args.temperature
    if args.max_tokens is not None:
        body["max_tokens"] = args.max_tokens
    return {**body, "stream": stream}


def _chat(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    if args.json:  # one document: the whole completion, not a stream
        dump(api.call("POST", "/v1/chat/completions", json=request_body(args, False), timeout=300), out)
        return 0
    with api.stream("POST", "/v1/chat/completions", json=request_body(args, True), timeout=300) as response:
        if response.status_code >= 400:
            response.read()
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise ApiError(response.status_code, *error_message(body, response.status_code))
        for piece in sse_deltas(response.iter_lines()):
            out.write(piece)
            out.flush()
    out.write("\n")
    return 0
