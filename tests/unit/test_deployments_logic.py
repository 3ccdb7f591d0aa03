"""The deployment state machine against a recording serving backend (a test double for the logic; the real local
backend runs in tests/integration/test_deployments_api.py): redeliveries, shared servers, timeouts, failures."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from functions.compute.serving import AdapterSpec, Endpoint, EndpointState, EndpointStatus, ServingSpec, serving_name
from functions.core.models import Tenant
from functions.core.settings import Settings
from functions.deployments import lifecycle, proxy, service
from functions.deployments.resync import reconcile_deployments
from functions.deployments.routing import Route
from functions.store.cache import Cache
from functions.store.mongo import Store
from tests.helpers.deployment_store import fine_tuned_id, two_tenants
from tests.helpers.tiny_models import BASE


@dataclass
class Recorder:
    """Serving backend double: records calls, answers from a dict of states it is told."""

    name: str = "fake"
    servers: dict[str, EndpointState] = field(default_factory=dict)
    adapters: dict[str, list[str]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    reject: set[str] = field(default_factory=set)

    def _status(self, name: str) -> EndpointStatus:
        state = self.servers.get(name, EndpointState.missing)
        endpoint = Endpoint(kind="http", url=f"http://10.0.0.1/{name}") if state != EndpointState.missing else None
        return EndpointStatus(
            name, state, 1, int(state == EndpointState.ready), endpoint, tuple(self.adapters.get(name, []))
        )

    def deploy(self, spec: ServingSpec) -> EndpointStatus:
        self.calls.append(("deploy", spec.name))
        self.servers.setdefault(spec.name, EndpointState.deploying)
        return self._status(spec.name)

    def status(self, name: str) -> EndpointStatus:
        return self._status(name)

    def scale(self, name: str, min_replicas: int, max_replicas: int) -> EndpointStatus:
        return self._status(name)

    def delete(self, name: str) -> EndpointStatus:
        self.calls.append(("delete", name))
        self.servers.pop(name, None)
        return self._status(name)

    def add_adapter(self, name: str, adapter: AdapterSpec) -> EndpointStatus:
        self.calls.append(("add_adapter", adapter.model_id))
        if adapter.model_id in self.reject:
            raise ValueError("Invalid LoRA adapter: rank 99 exceeds max_lora_rank 16")
        self.adapters.setdefault(name, []).append(adapter.model_id)
        return self._status(name)

    def remove_adapter(self, name: str, model_id: str) -> EndpointStatus:
        self.calls.append(("remove_adapter", model_id))
        return self._status(name)

    def adapter_endpoint(self, name: str, model_id: str) -> Endpoint | None:
        return Endpoint(kind="sagemaker", target=name, component=f"{name}-{model_id[-6:]}")


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def send_deployment(self, deployment_id: str, action: str) -> None:
        self.messages.append((deployment_id, action))


@pytest.fixture
def world() -> tuple[Store, Recorder, Sent, Cache, Settings]:
    return two_tenants(), Recorder(), Sent(), Cache(None), Settings(serving_ready_timeout_seconds=60)


def _deliver(world: Any, times: int = 1) -> None:
    store, backend, sent, cache, settings = world
    for deployment_id, action in list(sent.messages):
        for _ in range(times):
            lifecycle.handle(store, cache, backend, settings, deployment_id, action)
    sent.messages.clear()


def _ready_host(world: Any) -> Any:
    """acme's base deployment, deployed and ready: where adapters ride."""
    store, backend, sent, cache, settings = world
    host = service.deploy_base(store, cache, sent, settings, Tenant(id="acme"), BASE, service.Sizing())
    _deliver(world)
    backend.servers[host.name] = EndpointState.ready
    return lifecycle.refresh(store, cache, backend, settings, store.deployments.get(host.id))


def _deploy_adapter(world: Any, code: str, model: str | None = None) -> Any:
    """Deploy `code`'s adapter (from `two_tenants`, unless `model` names another) through the service."""
    store, _, sent, cache, settings = world
    adapter = model or fine_tuned_id(code)
    return service.deploy_fine_tuned(store, cache, sent, settings, Tenant(id=code), adapter, service.Sizing())  # type: ignore[arg-type]


def test_redelivered_deploy_starts_one_server_and_refresh_makes_it_ready(world: Any) -> None:
    store, backend, sent, cache, settings = world
    made = service.deploy_base(store, cache, sent, settings, Tenant(id="acme"), BASE, service.Sizing())  # type: ignore[arg-type]
    _deliver(world, times=3)
    assert set(backend.calls) == {("deploy", made.name)} and list(backend.servers) == [made.name]  # one server
    assert store.deployments.get(made.id).status == "deploying"
    backend.servers[made.name] = EndpointState.ready
    ready = lifecycle.refresh(store, cache, backend, settings, store.deployments.get(made.id))
    assert ready.status == "ready" and ready.endpoint["url"].endswith(made.name) and ready.ready_at


def test_adapters_of_two_tenants_share_one_server_which_outlives_its_owner(world: Any) -> None:
    store, backend, sent, cache, _settings = world
    host = _ready_host(world)
    rider = _deploy_adapter(world, "globex")
    assert rider.host_id == host.id and not rider.dedicated and rider.name == host.name
    _deliver(world)
    rider = store.deployments.get(rider.id)
    assert rider.status == "ready" and rider.endpoint["component"].startswith(host.name)  # the adapter's own target
    service.delete(store, cache, sent, "acme", host.id)  # type: ignore[arg-type]
    _deliver(world)
    assert store.deployments.get(host.id).status == "deleted" and ("delete", host.name) not in backend.calls
    service.delete(store, cache, sent, "globex", rider.id)  # type: ignore[arg-type]
    _deliver(world)
    assert store.deployments.get(rider.id).status == "deleted"
    assert backend.calls[-2:] == [("remove_adapter", rider.model), ("delete", host.name)]


def test_rejected_adapter_fails_its_deployment_only(world: Any) -> None:
    store, backend, _sent, _cache, _settings = world
    host = _ready_host(world)
    model = f"ft:{BASE}:acme:s:ftjob-acme"
    backend.reject.add(model)
    rider = _deploy_adapter(world, "acme", model)
    _deliver(world)
    failed = store.deployments.get(rider.id)
    assert (
        failed.status == "failed" and failed.error["code"] == "invalid_adapter" and "rank 99" in failed.error["message"]
    )
    assert store.deployments.get(host.id).status == "ready"


def test_without_a_host_a_fine_tuned_model_gets_its_own_server_with_the_adapter(world: Any) -> None:
    _store, _, _sent, _cache, settings = world
    model = f"ft:{BASE}:acme:s:ftjob-acme"
    own = _deploy_adapter(world, "acme", model)
    assert own.dedicated and own.name.startswith("vllm-ft-acme-smollm2-135m-instruct-")
    spec = lifecycle.spec_for(own, settings)
    assert spec.adapters == (AdapterSpec(model, own.adapter_uri or "", "acme"),) and spec.model == BASE


def test_server_that_never_gets_ready_is_failed_and_removed(world: Any) -> None:
    store, backend, sent, cache, settings = world
    made = service.deploy_base(store, cache, sent, settings, Tenant(id="acme"), BASE, service.Sizing())  # type: ignore[arg-type]
    _deliver(world)
    store.deployments.col.update_one({"_id": made.id}, {"$set": {"created_at": 0}})
    report = reconcile_deployments(store, cache, sent, backend, settings)  # type: ignore[arg-type]
    failed = store.deployments.get(made.id)
    assert failed.status == "failed" and failed.error["code"] == "deploy_timeout"
    assert report["deployments_changed"] == {made.id: "failed"} and ("delete", made.name) in backend.calls


def test_a_server_that_dies_fails_its_deployment_and_its_riders(world: Any) -> None:
    store, backend, sent, cache, settings = world
    host = _ready_host(world)
    rider = _deploy_adapter(world, "acme")
    _deliver(world)
    backend.servers[host.name] = EndpointState.failed
    reconcile_deployments(store, cache, sent, backend, settings)  # type: ignore[arg-type]
    assert store.deployments.get(host.id).status == "failed"
    assert store.deployments.get(rider.id).status == "failed"
    assert store.deployments.get(rider.id).error["code"] == "host_failed"


def test_lost_deploy_message_is_resent_by_the_reconciler(world: Any) -> None:
    store, backend, sent, cache, settings = world
    made = service.deploy_base(store, cache, sent, settings, Tenant(id="acme"), BASE, service.Sizing())  # type: ignore[arg-type]
    sent.messages.clear()  # lost
    store.deployments.col.update_one({"_id": made.id}, {"$set": {"updated_at": 0}})
    assert reconcile_deployments(store, cache, sent, backend, settings)["deploys_resent"] == [made.id]  # type: ignore[arg-type]
    assert sent.messages == [(made.id, "deploy")]


@pytest.mark.parametrize(
    ("sizing", "param"),
    [
        (service.Sizing(gpu_count=9), "gpu_count"),
        (service.Sizing(min_replicas=-1), "min_replicas"),
        (service.Sizing(min_replicas=2, max_replicas=1), "max_replicas"),
        (service.Sizing(min_replicas=0, max_replicas=0), "max_replicas"),
        (service.Sizing(prometheus_threshold=0), "prometheus_threshold"),
    ],
)
def test_sizing_errors_name_the_field(sizing: service.Sizing, param: str) -> None:
    with pytest.raises(service.InvalidRequest) as caught:
        sizing.check()
    assert caught.value.param == param


def test_serving_names_are_dns_labels_unique_per_deployment() -> None:
    a = serving_name("ft", "acme", "Org/Some_Model.v2-" + "x" * 80, "dep-1")
    b = serving_name("ft", "acme", "Org/Some_Model.v2-" + "x" * 80, "dep-2")
    assert a != b and len(a) <= 63 and a.startswith("vllm-ft-acme-some-model-v2-")
    assert serving_name("base", "acme", BASE, "dep-1").startswith("vllm-base-smollm2-135m-instruct-")


def test_stream_relay_hides_the_usage_chunk_unless_asked_and_counts_tokens() -> None:
    usage = {"id": "c", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
    body = (
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
        + f"data: {json.dumps(usage)}\n\n".encode()
        + b"data: [DONE]\n\n"
    )

    async def chunks() -> Any:
        for i in range(0, len(body), 7):  # split anywhere: events must be reassembled whole
            yield body[i : i + 7]

    async def relay(wants: bool) -> tuple[list[bytes], proxy.Call]:
        call = proxy.Call("acme", Route("dep-1", "m", "http", "http://x"), "/v1/chat/completions", "r", None, True)
        kept = [e async for e in proxy.sse_events(chunks()) if proxy.keep_event(call, e, wants)]
        return kept, call

    hidden, call = asyncio.run(relay(False))
    assert (
        len(hidden) == 2
        and hidden[-1] == b"data: [DONE]\n\n"
        and (call.prompt_tokens, call.completion_tokens) == (7, 3)
    )
    shown, _ = asyncio.run(relay(True))
    assert len(shown) == 3 and b'"usage"' in shown[1]


def test_a_racing_attach_that_loses_does_not_fail_a_ready_adapter(world: Any) -> None:
    store, backend, _sent, cache, settings = world
    _ready_host(world)
    model = f"ft:{BASE}:acme:s:ftjob-acme"
    rider = _deploy_adapter(world, "acme", model)
    stale = store.deployments.transition(rider.id, ["pending"], "deploying")  # what a reader saw mid-attach
    _deliver(world)
    assert store.deployments.get(rider.id).status == "ready"
    backend.reject.add(model)  # the server refuses a second load of the same adapter
    lifecycle.refresh(store, cache, backend, settings, stale)
    assert store.deployments.get(rider.id).status == "ready"


def test_a_usage_log_write_starts_on_the_next_loop_turn_and_shutdown_waits_for_it() -> None:
    # A stream's relay logs its call as its last event goes out: the write's worker thread must not take the GIL
    # before the event loop has written that event, yet the app's shutdown must still wait for the write.
    written: list[str] = []

    class Logs:
        def add(self, entry: Any) -> None:
            written.append(entry.route)

    store: Any = type("FakeStore", (), {"inference_logs": Logs()})()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        started: list[Any] = []
        run_in_executor = loop.run_in_executor
        loop.run_in_executor = lambda *args: started.append(args) or run_in_executor(*args)  # type: ignore[method-assign]
        call = proxy.Call("acme", Route("dep-1", "m", "http", "http://x"), "/v1/chat/completions", "r", None, True)
        call.record_later(store, 200)
        assert started == [] and written == []  # nothing started in this turn of the loop
        await proxy.drain_log_writes()  # the shutdown's wait covers a write not yet started
        assert len(started) == 1 and written == ["/v1/chat/completions"]

    asyncio.run(scenario())
