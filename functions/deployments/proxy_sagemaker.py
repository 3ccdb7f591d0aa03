"""The proxy's SageMaker leg: `invoke_endpoint` (and its streaming variant) on the routed endpoint and inference
component. boto3 calls block, so they run in a worker thread, and so does the usage log's write. A stream's first
part is awaited before answering, so a refusal (no such endpoint, throttled, the container's error) is an HTTP error
like the non-streamed one's, not a 200 that ends at once with an error event; the parts are then relayed as they
arrive, through the same relay as HTTP streams (a stream broken later ends with an error event).

`/invocations` takes OpenAI chat and completion bodies; every other route (seed 001's `/predict`, embeddings, seeds
002-004's routes) names its path, method and tenant in `CustomAttributes` (`route=/predict;method=POST;tenant=acme`),
which the server turns into that route (ministudio_serve/sagemaker_routes.py), so each keeps its own answer's shape.
Only callers IAM allows reach an endpoint: the control plane is the one that says which tenant a request is for."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from functions.compute.serving import Endpoint
from functions.core.observability import log
from functions.core.settings import Settings
from functions.deployments import capacity
from functions.store.mongo import Store

_DONE = object()
_INVOCATIONS = ("/v1/chat/completions", "/v1/completions")  # what /invocations itself answers


def custom_attributes(call: Any, method: str = "POST") -> str | None:
    """Where the server routes a request that is not an OpenAI chat or completion; None for those."""
    if method == "POST" and call.path in _INVOCATIONS:
        return None
    return f"route={call.path};method={method};tenant={call.client_code}"


async def forward(call: Any, payload: bytes, wants_usage: bool, store: Store, settings: Settings) -> Response:
    from functions.compute import sagemaker_invoke
    from functions.deployments.proxy_stream import relay_events, sse_events

    route = call.route
    endpoint = Endpoint(kind="sagemaker", target=route.target, component=route.component)
    sent = time.perf_counter()
    if not call.stream:
        try:
            invoke = functools.partial(
                sagemaker_invoke.invoke, endpoint, payload, settings=settings, custom_attributes=custom_attributes(call)
            )
            content = await capacity.retrying(settings, invoke, str(route.target))  # waits out a scale from zero
        except Exception as exc:
            raise _refused(call, exc, store) from exc
        finally:
            call.timing.upstream += time.perf_counter() - sent
        log_it = BackgroundTask(call.record_answer, store, 200, content)
        return Response(content, media_type="application/json", background=log_it)

    def start() -> tuple[Iterator[bytes], object]:  # the call itself, and its first part
        parts = sagemaker_invoke.invoke_stream(endpoint, payload, settings=settings)
        return parts, next(parts, _DONE)

    try:
        parts, first = await capacity.retrying(settings, start, str(route.target))
    except Exception as exc:
        raise _refused(call, exc, store) from exc
    finally:
        call.timing.upstream += time.perf_counter() - sent
    relay = relay_events(call, sse_events(_aiter(first, parts)), wants_usage, store)
    return StreamingResponse(relay, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def forward_seed(
    call: Any, method: str, body: bytes, content_type: str | None, store: Store, settings: Settings
) -> Response:
    """A seed route (functions/deployments/proxy_seed.py) through `invoke_endpoint`: the server's answer as it came,
    a refusal's body redacted, as on HTTP."""
    from functions.compute import sagemaker_invoke
    from functions.deployments.proxy_seed import answer

    endpoint = Endpoint(kind="sagemaker", target=call.route.target, component=call.route.component)
    sent = time.perf_counter()
    try:
        content = await asyncio.to_thread(
            sagemaker_invoke.invoke,
            endpoint,
            body,
            content_type or "application/json",
            settings=settings,
            custom_attributes=custom_attributes(call, method),
        )
    except sagemaker_invoke.InvokeError as exc:
        if not exc.body:  # SageMaker's own refusal (throttled, no such endpoint), not the container's answer
            raise _refused(call, exc, store) from exc
        return answer(call, exc.status_code, exc.body, "application/json", store)
    except Exception as exc:
        raise _refused(call, exc, store) from exc
    finally:
        call.timing.upstream += time.perf_counter() - sent
    return answer(call, 200, content, "application/json", store)


def _refused(call: Any, exc: Exception, store: Store) -> Exception:
    """The container's answer (ModelError) or SageMaker's refusal, re-shaped; no answer at all is a 502 (the
    operator's log has why)."""
    from functions.compute import sagemaker_invoke
    from functions.deployments.proxy_call import rejected
    from functions.deployments.proxy_errors import UpstreamError

    if isinstance(exc, sagemaker_invoke.InvokeError):
        return rejected(call, exc.status_code, exc.body, store)
    log("warning", "SageMaker endpoint did not answer", deployment_id=call.route.deployment_id, error=repr(exc))
    call.record_later(store, 502, f"the endpoint did not answer ({type(exc).__name__})")
    return UpstreamError(f"deployment {call.route.deployment_id} did not answer: {type(exc).__name__}")


async def _aiter(first: object, parts: Iterator[bytes]) -> AsyncIterator[bytes]:
    part = first
    while part is not _DONE:
        assert isinstance(part, bytes)
        yield part
        part = await asyncio.to_thread(next, parts, _DONE)
