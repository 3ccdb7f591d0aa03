"""Serving hardening, the logic around the real parts (tests/integration/test_serving_hardening.py runs them for real):
streams cut mid-way end with an error the openai SDK raises, servers' errors are re-shaped and redacted, a tenant
reads nothing of another in a failure, a restarting server shows on its records, a failed deployment answers chat."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import openai
import pytest

from functions.compute import local_serving_procs as procs
from functions.compute.serving import EndpointState, EndpointStatus
from functions.core.errors import NotFound, ServiceUnavailable
from functions.core.models import Tenant
from functions.core.settings import Settings
from functions.deployments import lifecycle, proxy, proxy_errors, redact, routing, service
from functions.deployments.route_cache import route_key
from functions.deployments.routing import Route
from functions.store.cache import Cache
from functions.store.mongo import Store
from tests.helpers.deployment_store import LogStore, two_tenants
from tests.helpers.tiny_models import BASE
from tests.unit.test_deployments_logic import Recorder, Sent

GLOBEX_FT = f"ft:{BASE}:globex:s:ftjob-globex"
CHUNK = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'  # noqa: E501


class SpyCache(Cache):
    def __init__(self) -> None:
        super().__init__(None)
        self.deleted: list[str] = []

    def delete(self, *keys: str) -> None:
        self.deleted.extend(keys)


class Restarter(Recorder):
    """A backend double that can say a server is restarting, the way the local backend's supervisor does."""

    restarting: set[str]

    def _status(self, name: str) -> EndpointStatus:
        status = super()._status(name)
        if name in getattr(self, "restarting", set()):
            why = "restarting after exit code -9 (attempt 1 of 3)"
            return EndpointStatus(
                **{**status.__dict__, "state": EndpointState.deploying, "message": why, "restarting": True}
            )
        return status


def _relay(chunks: list[bytes], broken: Exception | None = None) -> tuple[bytes, proxy.Call, LogStore]:
    async def upstream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk
        if broken is not None:
            raise broken

    async def run() -> bytes:
        events = proxy.relay_events(call, proxy.sse_events(upstream()), False, store)  # type: ignore[arg-type]
        return b"".join([e async for e in events])

    call = proxy.Call("acme", Route("dep-1", "m", "http", "http://x"), "/v1/chat/completions", "req-42", None, True)
    store = LogStore()
    return asyncio.run(run()), call, store


def _sdk_reads(body: bytes) -> list[Any]:
    """What the openai SDK makes of a stream body: the chunks it yields (or the error it raises)."""
    transport = httpx2.MockTransport(
        lambda request: httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})
    )
    client = openai.OpenAI(api_key="k", base_url="http://cp/v1", http_client=httpx2.Client(transport=transport))
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
    return list(stream)


def test_a_stream_that_ends_without_done_ends_with_an_error_the_sdk_raises() -> None:
    body, _, store = _relay([CHUNK, CHUNK])
    assert body.endswith(b"\n\n") and b'"code": "stream_interrupted"' in body and b"req-42" in body
    with pytest.raises(openai.APIError, match="req-42"):
        _sdk_reads(body)
    assert [(e.status_code, e.stream) for e in store.inference_logs.entries] == [(502, True)]
    # Without the relay's error event the SDK takes the truncated text for a whole answer.
    assert len(_sdk_reads(CHUNK * 2)) == 2


def test_a_broken_connection_or_a_half_event_ends_with_the_error_event() -> None:
    broken, _, store = _relay([CHUNK, CHUNK[:20]], broken=ConnectionResetError("peer gone"))
    assert broken.count(b"data: ") == 2 and b"stream_interrupted" in broken  # the half event is not passed on
    cut, _, _ = _relay([CHUNK, CHUNK[:20]])
    assert cut.count(b"data: ") == 2 and b"stream_interrupted" in cut
    assert store.inference_logs.entries[0].status_code == 502
    whole, _, store = _relay([CHUNK, b"data: [DONE]\n\n"])
    assert whole == CHUNK + b"data: [DONE]\n\n" and store.inference_logs.entries[0].status_code == 200
    assert len(_sdk_reads(whole)) == 1


def test_a_servers_error_event_mid_stream_is_reshaped_with_the_request_id() -> None:
    upstream = {"error": {"message": "engine died at /srv/cache/x.bin", "type": "Internal", "code": "engine_error"}}
    body, _, _ = _relay([CHUNK, f"data: {json.dumps(upstream)}\n\n".encode()])
    event = json.loads(body.split(b"\n\n")[1][6:])
    assert event["error"]["code"] == "engine_error" and "req-42" in event["error"]["message"]
    assert "/srv" not in event["error"]["message"] and event["error"]["type"] == "server_error"


def test_the_sagemaker_stream_that_breaks_ends_with_the_error_event(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.compute import sagemaker_invoke
    from functions.deployments import proxy_sagemaker

    def parts(*_: Any, **__: Any) -> Iterator[bytes]:
        yield CHUNK
        raise sagemaker_invoke.InvokeError("ModelStreamError: CUDA out of memory", 502)

    monkeypatch.setattr(sagemaker_invoke, "invoke_stream", parts)
    route = Route("dep-1", "m", "sagemaker", target="vllm-base-x")
    call = proxy.Call("acme", route, "/v1/chat/completions", "req-7", None, True)
    store = LogStore()

    async def run() -> bytes:
        answer: Any = await proxy_sagemaker.forward(call, b"{}", False, store, Settings())  # type: ignore[arg-type]
        return b"".join([e async for e in answer.body_iterator])

    body = asyncio.run(run())
    assert body.startswith(CHUNK) and b"stream_interrupted" in body and b"CUDA" not in body
    with pytest.raises(openai.APIError, match="req-7"):
        _sdk_reads(body)
    assert store.inference_logs.entries[0].status_code == 502


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            {
                "error": {
                    "message": "max_tokens too large for s3://bucket/artifacts/globex/ftjob-x/adapter/",
                    "type": "x",
                    "param": "max_tokens",
                    "code": "context_length_exceeded",
                }
            },
            (
                400,
                "invalid_request_error",
                "max_tokens",
                "context_length_exceeded",
                "max_tokens too large for <s3 uri>",
            ),
        ),
        (  # seed 002's shape: only its message passes, not its details
            422,
            {
                "error": "validation_error",
                "message": "prompt: field required",
                "details": {"trace": "/srv/app.py"},
                "timestamp": "t",
                "request_id": "theirs",
            },
            (422, "invalid_request_error", None, None, "prompt: field required"),
        ),
        (
            500,
            b"<html>Traceback (most recent call last): File /srv/x.py</html>",
            (500, "server_error", None, None, "the inference server answered HTTP 500"),
        ),
        (401, {"error": {"message": "bad key"}}, (502, "server_error", None, "upstream_unavailable", None)),
    ],
)
def test_a_servers_error_answer_keeps_only_its_message(status: int, body: Any, expected: tuple[Any, ...]) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    error = proxy_errors.rejected(status, content, ["m"])
    got = (error.status_code, error.error_type, error.param, error.code, error.message)
    assert got[:4] == expected[:4] and (expected[4] is None or got[4] == expected[4]), got
    assert "theirs" not in error.message and "/srv" not in error.message and "bad key" not in error.message


def test_redaction_keeps_the_tenants_own_model_and_hides_everything_else() -> None:
    own = f"ft:{BASE}:acme:s:ftjob-acme"
    text = (
        f"Invalid LoRA adapter {own}: rank 99 > 16 (loaded next to {GLOBEX_FT} from s3://art/artifacts/globex/"
        "ftjob-globex/adapter/ cached at /home/u/.cache/ministudio/adapters/globex-1 on 127.0.0.1:40123, "
        "http://10.0.0.7:8000/v1 and localhost:9000; job ftjob-abc123; key artifacts/globex/x)\nTraceback line"
    )
    shown = redact.for_tenant(text, own=[own])
    assert shown.startswith(f"Invalid LoRA adapter {own}: rank 99 > 16") and "\n" not in shown
    for leak in ("globex", "s3://", "/home", "127.0.0.1", "40123", "10.0.0.7", "localhost", "abc123"):
        assert leak not in shown, (leak, shown)


def _world() -> tuple[Store, Restarter, Sent, SpyCache, Settings]:
    return two_tenants(), Restarter(), Sent(), SpyCache(), Settings(serving_ready_timeout_seconds=60)


def _host_with_rider(world: Any) -> tuple[Any, Any]:
    store, backend, sent, cache, settings = world
    host = service.deploy_base(store, cache, sent, settings, Tenant(id="acme"), BASE, service.Sizing())
    for deployment_id, action in sent.messages:
        lifecycle.handle(store, cache, backend, settings, deployment_id, action)
    sent.messages.clear()
    backend.servers[host.name] = EndpointState.ready
    lifecycle.refresh(store, cache, backend, settings, store.deployments.get(host.id))
    rider = service.deploy_fine_tuned(store, cache, sent, settings, Tenant(id="globex"), GLOBEX_FT, service.Sizing())
    for deployment_id, action in sent.messages:
        lifecycle.handle(store, cache, backend, settings, deployment_id, action)
    assert store.deployments.get(rider.id).status == "ready"
    return store.deployments.get(host.id), store.deployments.get(rider.id)


def test_a_restarting_server_shows_on_its_records_and_drops_their_routes_until_it_is_back() -> None:
    world = _world()
    store, backend, _, cache, settings = world
    host, rider = _host_with_rider(world)
    backend.restarting = {host.name}  # its server exited; the backend brings it back
    cache.deleted.clear()
    for d in (host, rider):
        lifecycle.refresh(store, cache, backend, settings, d)
    host, rider = store.deployments.get(host.id), store.deployments.get(rider.id)
    assert (host.status, rider.status) == ("deploying", "deploying")
    assert host.status_message == rider.status_message == "restarting after exit code -9 (attempt 1 of 3)"
    assert {route_key("acme", BASE), route_key("globex", GLOBEX_FT)} <= set(cache.deleted)
    with pytest.raises(ServiceUnavailable, match="restarting after exit code -9"):
        routing.resolve(store, cache, backend, settings, "acme", BASE)  # type: ignore[arg-type]
    store.deployments.col.update_one({"_id": host.id}, {"$set": {"created_at": 0}})  # long past the ready timeout
    assert lifecycle.refresh(store, cache, backend, settings, host).status == "deploying"  # the backend bounds it

    backend.restarting = set()
    for d in (host, rider):
        lifecycle.refresh(store, cache, backend, settings, store.deployments.get(d.id))
    host, rider = store.deployments.get(host.id), store.deployments.get(rider.id)
    assert (host.status, rider.status) == ("ready", "ready") and host.status_message is None


def test_a_failed_host_tells_another_tenants_rider_nothing_of_the_host() -> None:
    world = _world()
    store, backend, _, cache, settings = world
    host, rider = _host_with_rider(world)
    backend.servers[host.name] = EndpointState.failed
    store.deployments.col.update_one({"_id": host.id}, {"$set": {"status": "failed", "error": {"code": "deploy_failed",
        "message": "acme's server: the inference server exited with code -9"}}})  # fmt: skip
    failed = lifecycle.refresh(store, cache, backend, settings, rider)
    assert failed.status == "failed" and failed.error["code"] == "host_failed"
    assert "acme" not in failed.error["message"] and "-9" not in failed.error["message"]


def test_deployment_errors_are_redacted_for_their_owner() -> None:
    world = _world()
    store, backend, _, cache, settings = world
    host, _ = _host_with_rider(world)
    backend.servers[host.name] = EndpointState.failed
    leaky = EndpointStatus(host.name, EndpointState.failed, message=f"died serving {GLOBEX_FT} at 127.0.0.1:4444")
    failed = lifecycle.apply(store, cache, backend, settings, host, leaky)
    assert failed.error["message"] == "died serving <another model> at <address>"


def test_chat_to_a_model_whose_deployment_failed_says_so_and_a_deleted_one_is_not_found() -> None:
    world = _world()
    store, backend, sent, cache, settings = world
    made = service.deploy_base(store, cache, sent, settings, Tenant(id="acme"), BASE, service.Sizing())
    store.deployments.transition(made.id, ["pending"], "failed", error={"code": "x", "message": "exited with code -9"})
    with pytest.raises(ServiceUnavailable) as caught:
        routing.resolve(store, cache, backend, settings, "acme", BASE)  # type: ignore[arg-type]
    assert caught.value.code == "deployment_failed" and caught.value.status_code == 503
    assert caught.value.message.startswith(f"your deployment {made.id} of model {BASE!r} failed: exited with code -9")
    with pytest.raises(NotFound):  # another tenant's failure is not this tenant's business
        routing.resolve(store, cache, backend, settings, "globex", BASE)  # type: ignore[arg-type]
    store.deployments.transition(made.id, ["failed"], "deleted")
    with pytest.raises(NotFound):
        routing.resolve(store, cache, backend, settings, "acme", BASE)  # type: ignore[arg-type]


def test_restarts_count_in_a_row_and_a_server_that_stayed_up_starts_afresh() -> None:
    settings = Settings(serving_restart_window_seconds=60)
    assert procs.next_attempt({"restarts": 2, "ready_since": 1000.0}, 1030.0, settings) == 3
    assert procs.next_attempt({"restarts": 2, "ready_since": 1000.0}, 1061.0, settings) == 1
    assert procs.next_attempt({}, 5.0, settings) == 1
    assert procs.exit_message({"exit_code": -9}) == "the inference server exited with code -9"
    gave_up = {"exit_code": -9, "restarts": 3, "gave_up": True}
    assert procs.exit_message(gave_up) == "the inference server exited with code -9; 3 restart(s) did not bring it back"
