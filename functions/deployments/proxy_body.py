"""The body the proxy sends upstream. Its `model` is always the routed one, so a caller can never reach another
tenant's adapter on a shared server by naming it; a stream always asks the server for the final usage chunk (the
usage log needs it). The caller's bytes go unchanged when they already say that: parsing is FastAPI's, and
re-encoding a long prompt would cost about a millisecond more per request."""

from __future__ import annotations

import json
from typing import Any


def upstream_body(model: str, stream: bool, body: dict[str, Any], raw: bytes | None) -> tuple[bytes, bool]:
    """The body for the server, whose `model` is the routed one, and whether the caller wants the usage chunk (the
    server is always asked for one on a stream, for the log). The caller's own bytes go when they already say all
    that: the routed model, named by the one `"model"` in them (without `\\u` escapes a key that reads `model` is
    spelt so, so there is no second one that a parser keeping the first duplicate would take), and on a stream
    `include_usage` already set, or added in front without re-encoding the rest."""
    options = body.get("stream_options")
    asked = options if isinstance(options, dict) else {}
    wants_usage = bool(asked.get("include_usage")) if stream else True
    plain = raw is not None and b"\\u" not in raw and raw.count(b'"model"') == 1
    if raw is not None and plain and body.get("model") == model:
        if not stream or wants_usage:
            return raw, wants_usage
        start = raw.find(b"{")
        if options is None and b'"stream_options"' not in raw and start != -1:
            return raw[: start + 1] + b'"stream_options":{"include_usage":true},' + raw[start + 1 :], wants_usage
    body = {**body, "model": model}
    if stream:
        body["stream_options"] = {**asked, "include_usage": True}
    return json.dumps(body).encode(), wants_usage
