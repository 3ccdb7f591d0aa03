"""The proxy's stream relay: whole SSE events from the server's byte chunks, passed on one by one. The usage chunk
the proxy always asks for is noted for the log and passed on only when the caller asked for it; a stream that breaks,
or ends without `data: [DONE]`, ends with OpenAI's in-stream error event instead of a normal-looking end."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from functions.core.observability import log
from functions.deployments import activity, proxy_errors
from functions.store.cache import get_cache
from functions.store.mongo import Store

if TYPE_CHECKING:
    from functions.deployments.proxy_call import Call

_DONE = b"data: [DONE]"


class StreamCut(Exception):
    """The upstream stream ended without `data: [DONE]` (a server that died between two events)."""


async def relay_events(
    call: Call, events: AsyncIterator[bytes], wants_usage: bool, store: Store
) -> AsyncIterator[bytes]:
    """Pass whole events on. A stream that breaks, or ends without `data: [DONE]`, ends with an error event for the
    caller (never a silent, normal-looking end), a warning for the operator and status 502 in the usage log."""
    status, error = 200, None
    try:
        async for event in events:
            if event.strip() == _DONE:
                yield _DONE + b"\n\n"
                return
            if not event.endswith(b"\n\n"):
                raise StreamCut("the stream ended inside an event")
            if (failure := _error_in(event)) is not None:  # the server's own error event: re-shaped, and the end
                status, error = 502, "the inference server sent an error mid-stream"
                yield proxy_errors.upstream_event_error(failure, call.request_id, [call.route.model])
                return
            if keep_event(call, event, wants_usage):
                yield event
            activity.touch(get_cache(), call.route.deployment_id)  # a stream in progress is not idle (throttled)
        raise StreamCut("the stream ended without data: [DONE]")
    except Exception as exc:  # the server died mid-stream: a broken connection, or an end that came too soon
        status, error = 502, f"the answer was cut off ({type(exc).__name__})"
        where = {"deployment_id": call.route.deployment_id, "request_id": call.request_id}
        log("warning", "inference stream interrupted", **where, error=repr(exc))
        yield proxy_errors.interrupted(call.request_id)
    finally:
        call.record_later(store, status, error)


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Whole SSE events (each ending in a blank line) from arbitrary byte chunks."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            yield event + b"\n\n"
    if buffer.strip():
        yield buffer


def _error_in(event: bytes) -> dict[str, Any] | None:
    text = event.strip()
    if not text.startswith(b"data:") or b'"error"' not in text:
        return None
    with contextlib.suppress(ValueError):
        data = json.loads(text[5:])
        if isinstance(data, dict) and data.get("error"):
            return data
    return None


def keep_event(call: Call, event: bytes, wants_usage: bool) -> bool:
    """Note the usage chunk; pass it on only when the caller asked for it (`stream_options.include_usage`)."""
    text = event.strip()
    # Only the chunk that carries usage is parsed: decoding every token's chunk would cost the stream dearly.
    if not text.startswith(b"data:") or text == b"data: [DONE]" or b'"usage"' not in text:
        return True
    try:
        data = json.loads(text[5:])
    except ValueError:
        return True
    if isinstance(data, dict) and data.get("usage"):
        call.take_usage(data)
        return wants_usage or bool(data.get("choices"))
    return True
