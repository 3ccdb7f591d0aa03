"""The inference proxy on one event loop, as uvicorn runs it: the control plane's app (its real routes, routing,
proxy and Redis), an inference server double on 127.0.0.1 (aiohttp), and a backend or store that is slow on purpose.
A slow backend status call or usage-log write delays only the request it belongs to; every proxied answer says how
long the control plane itself took."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import mongomock
import pytest
from aiohttp import web

from functions.api import deps
from functions.api.app import create_app
from functions.compute.serving import Endpoint, EndpointState, EndpointStatus
from functions.core.models import Deployment, DeploymentStatus, InferenceLog, Tenant
from functions.core.settings import Settings
from functions.deployments import proxy
from functions.local.procs import Child
from functions.store.cache import Cache
from functions.store.mongo import Store

MODEL_A, MODEL_B = "org/model-a", "org/model-b"
HEADER = proxy.OVERHEAD_HEADER
UPSTREAM_PAUSE = 0.3  # seconds the server double takes when asked to be slow


@dataclass
class Gate:
    """A blocking call held until the test lets it go; `order` says what finished when."""

    order: list[str]
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    calls: int = 0

    def hold(self, what: str) -> None:
        self.calls += 1
        self.entered.set()
        self.release.wait(10)  # without the fix the event loop is stuck here until this runs out
        self.order.append(what)


class SlowBackend:
    """A backend whose status call for model A's server blocks, as a Kubernetes call can for its whole timeout."""

    name = "slow"

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def status(self, name: str) -> EndpointStatus:
        self.gate.hold("backend status answered")
        return EndpointStatus(name, EndpointState.deploying, 1, 0, None)


class SlowLogs:
    """The usage log, whose writes for streamed answers block (MongoDB slow, or failing over)."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.entries: list[InferenceLog] = []

    def add(self, entry: InferenceLog) -> None:
        if entry.stream:
            self.gate.hold("usage log written")
        self.entries.append(entry)


@contextlib.asynccontextmanager
async def _server(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _inference_server(seen: list[dict[str, Any]]) -> web.Application:
    """Answers like ministudio-serve: OpenAI chat (whole or streamed, with a usage chunk) and seed 002's /predict."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        if body.get("slow"):
            await asyncio.sleep(UPSTREAM_PAUSE)
        usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
            return web.json_response({"id": "c", "object": "chat.completion", "choices": [choice], "usage": usage})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        events: list[dict[str, Any]] = [{"id": "c", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}]
        if (body.get("stream_options") or {}).get("include_usage"):  # only when asked, as OpenAI's and vLLM's
            events.append({"id": "c", "choices": [], "usage": usage})
        for data in events:
            await response.write(f"data: {json.dumps(data)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    async def predict(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({"generated_text": "Hi", "tokens_generated": 1})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/predict", predict)
    return app


@pytest.fixture
def world(redis_server: Child) -> Iterator[Callable[..., Any]]:
    """`world(scenario)` runs `scenario(client, gate, seen)` on one event loop against the app, with model A
    deploying (its status call held by `gate`) and model B ready on the server double (`seen`: the bodies it got)."""
    cache = Cache(redis_server.url)
    cache.client.flushdb()
    order: list[str] = []
    gate = Gate(order)
    store = Store(mongomock.MongoClient()["proxy_loop"])
    store.inference_logs = SlowLogs(gate)  # type: ignore[assignment]
    for model, status in ((MODEL_A, DeploymentStatus.deploying), (MODEL_B, DeploymentStatus.ready)):
        store.deployments.insert(
            Deployment(
                id=f"dep-{model[-1]}",
                client_code="acme",
                model=model,
                base_model=model,
                name=f"vllm-base-{model[-7:]}",
                status=status,
            )
        )
    app = create_app()
    settings = Settings(inference_api_key=None)

    def given(value: Any) -> Callable[[], Any]:
        async def dependency() -> Any:  # async, as the app's own: a sync one would hop threads
            return value

        return dependency

    caller = deps.ProxyCaller(Tenant(id="acme"))  # the proxy routes take one dependency: the caller with its clients
    clients = {"store": store, "cache": cache, "settings": settings, "serving": SlowBackend(gate)}
    caller_type = type("TestCaller", (deps.ProxyCaller,), clients)  # class attributes shadow the properties
    caller.__class__ = caller_type
    app.dependency_overrides[deps.proxy_caller] = given(caller)
    seen: list[dict[str, Any]] = []

    def run(scenario: Callable[..., Any]) -> Any:
        async def main() -> Any:
            async with _server(_inference_server(seen)) as url:
                store.deployments.update(
                    "dep-b", [DeploymentStatus.ready.value], endpoint=Endpoint(kind="http", url=url).__dict__
                )
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://cp", timeout=30) as client:
                    try:
                        return await scenario(client, gate, seen)
                    finally:
                        gate.release.set()
                        await proxy.close_sessions()

        return asyncio.run(main())

    run.store = store  # type: ignore[attr-defined]
    yield run
    gate.release.set()


def _chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], **extra}


def test_a_slow_backend_status_call_does_not_hold_up_a_chat_to_another_model(world: Callable[..., Any]) -> None:
    async def scenario(client: httpx.AsyncClient, gate: Gate, _: Any) -> None:
        # Given three requests for model A, whose route lookup waits on the backend's status call
        waiting = [asyncio.create_task(client.post("/v1/chat/completions", json=_chat(MODEL_A))) for _ in range(3)]
        assert await asyncio.to_thread(gate.entered.wait, 10)
        # When a chat to the ready model B is sent meanwhile
        answer = await client.post("/v1/chat/completions", json=_chat(MODEL_B))
        gate.order.append("chat to B answered")
        gate.release.set()
        refused = await asyncio.gather(*waiting)
        # Then B was answered while A's backend call was still going; A's callers learnt A is not ready yet,
        # from one status call between them
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "Hi"
        assert gate.order == ["chat to B answered", "backend status answered"]
        assert [r.json()["error"]["code"] for r in refused] == ["model_not_ready"] * 3
        assert gate.calls == 1

    world(scenario)


def test_a_slow_usage_log_write_does_not_hold_up_the_next_request(world: Callable[..., Any]) -> None:
    async def scenario(client: httpx.AsyncClient, gate: Gate, _: Any) -> None:
        # Given a streamed answer whose usage-log write, at the stream's end, blocks
        first = await client.post("/v1/chat/completions", json=_chat(MODEL_B, stream=True))
        assert first.status_code == 200 and first.text.endswith("data: [DONE]\n\n")
        assert '"usage"' not in first.text  # asked of the server for the log, not passed to a caller who did not ask
        assert await asyncio.to_thread(gate.entered.wait, 10)
        # When the next request comes while that write still waits
        second = await client.post("/v1/chat/completions", json=_chat(MODEL_B))
        gate.order.append("next request answered")
        gate.release.set()
        await proxy.drain_log_writes()
        # Then it was answered first, and both calls are in the log all the same
        assert second.status_code == 200
        assert gate.order == ["next request answered", "usage log written"]

    world(scenario)
    logs = world.store.inference_logs.entries  # type: ignore[attr-defined]
    assert sorted((e.stream, e.status_code, e.completion_tokens) for e in logs) == [(False, 200, 1), (True, 200, 1)]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", _chat(MODEL_B, slow=True)),
        ("/v1/chat/completions", _chat(MODEL_B, slow=True, stream=True)),
        ("/inference/infer/" + MODEL_B, {"prompt": "Hi", "max_tokens": 1}),
    ],
    ids=["v1", "v1-stream", "seed"],
)
def test_every_proxied_answer_says_how_long_the_control_plane_took(
    world: Callable[..., Any], path: str, body: dict[str, Any]
) -> None:
    async def scenario(client: httpx.AsyncClient, _: Gate, seen: list[dict[str, Any]]) -> None:
        started = time.perf_counter()
        answer = await client.post(path, json=body)
        elapsed_ms = (time.perf_counter() - started) * 1000
        assert answer.status_code == 200, answer.text
        overhead = float(answer.headers[HEADER])
        assert overhead >= 0
        if body.get("slow"):  # the server's own pause is not counted as the control plane's
            assert overhead <= elapsed_ms - UPSTREAM_PAUSE * 1000
        assert seen[-1]["model"] == MODEL_B

    world(scenario)


def test_an_error_answer_carries_the_overhead_too(world: Callable[..., Any]) -> None:
    async def scenario(client: httpx.AsyncClient, gate: Gate, _: Any) -> None:
        gate.release.set()
        answer = await client.post("/v1/chat/completions", json=_chat("org/not-deployed"))
        assert answer.status_code == 404 and float(answer.headers[HEADER]) >= 0

    world(scenario)
