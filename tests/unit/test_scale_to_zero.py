"""Scale to zero against a recording backend that sleeps and wakes (the real local backend runs in
tests/integration/test_scale_to_zero.py) and a real redis-server: the idle sweep, the one wake-up that many held
requests share, a failed or slow wake-up answering every held request, riders sleeping with their server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from functions.compute.serving import EndpointState, EndpointStatus, ScalesToZero
from functions.core.errors import Conflict, InvalidRequest, ServiceUnavailable
from functions.core.models import Deployment, DeploymentStatus, Tenant
from functions.core.settings import Settings
from functions.deployments import activity, idle, lifecycle, proxy_call, routing, service, wake
from functions.local.procs import Child
from functions.store.cache import Cache
from functions.store.mongo import Store
from tests.helpers.deployment_store import two_tenants
from tests.unit.test_deployments_logic import BASE, Recorder, Sent

D = DeploymentStatus


@dataclass
class Sleeper(Recorder):
    """Recorder that scales to zero: `wake` starts a server that gets ready after `start_seconds` (or fails)."""

    start_seconds: float = 0.3
    fail_with: str | None = None
    wakes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sleep(self, name: str) -> EndpointStatus:
        self.calls.append(("sleep", name))
        self.servers[name] = EndpointState.idle
        return self._status(name)

    def wake(self, name: str) -> EndpointStatus:
        with self.lock:
            if self.servers.get(name) != EndpointState.idle:
                return self._status(name)
            self.wakes += 1
            self.servers[name] = EndpointState.deploying
        outcome = EndpointState.failed if self.fail_with else EndpointState.ready
        threading.Timer(self.start_seconds, self.servers.__setitem__, (name, outcome)).start()
        return self._status(name)

    def _status(self, name: str) -> EndpointStatus:
        found = super()._status(name)
        if found.state == EndpointState.failed:
            return EndpointStatus(name, EndpointState.failed, message=self.fail_with)
        return found


@pytest.fixture
def world(redis_server: Child) -> Iterator[tuple[Store, Sleeper, Sent, Cache, Settings]]:
    store = two_tenants()
    cache = Cache(redis_server.url)
    cache.client.flushdb()
    yield store, Sleeper(), Sent(), cache, Settings(serving_ready_timeout_seconds=60, wake_timeout_seconds=5)
    cache.client.flushdb()


def _ready(world: Any, tenant: str = "acme", **sizing: Any) -> Deployment:
    store, backend, sent, cache, settings = world
    made = service.deploy_base(store, cache, sent, settings, Tenant(id=tenant), BASE, service.Sizing(**sizing))
    for deployment_id, action in sent.messages:
        lifecycle.handle(store, cache, backend, settings, deployment_id, action)
    sent.messages.clear()
    backend.servers[made.name] = EndpointState.ready
    return lifecycle.refresh(store, cache, backend, settings, store.deployments.get(made.id))


def _long_ago(store: Store, deployment: Deployment, seconds: float = 3600) -> None:
    store.deployments.col.update_one({"_id": deployment.id}, {"$set": {"ready_at": int(time.time() - seconds)}})


def test_the_backend_double_scales_to_zero() -> None:
    assert isinstance(Sleeper(), ScalesToZero) and not isinstance(Recorder(), ScalesToZero)


def test_idle_seconds_is_checked_and_defaults_from_the_settings(world: Any) -> None:
    _store, _backend, _sent, _cache, settings = world
    with pytest.raises(InvalidRequest) as bad:
        service.Sizing(min_replicas=0, idle_seconds=1).check()
    assert bad.value.param == "idle_seconds"
    assert _ready(world, min_replicas=0).idle_seconds == settings.deployment_idle_seconds == 900
    assert _ready(world, min_replicas=0, idle_seconds=30).idle_seconds == 30


def test_the_sweep_scales_to_zero_only_zero_minimum_deployments_idle_past_their_idle_seconds(world: Any) -> None:
    store, backend, _sent, cache, settings = world
    sleepy = _ready(world, min_replicas=0, idle_seconds=60)
    busy = _ready(world, "globex", min_replicas=0, idle_seconds=60)
    kept = _ready(world, min_replicas=1, idle_seconds=60)
    for d in (sleepy, busy, kept):
        _long_ago(store, d)
    activity.touch(cache, busy.id)  # a request just now
    assert idle.sweep(store, cache, backend, settings) == [sleepy.id]
    after = store.deployments.get(sleepy.id)
    assert after.status == D.idle and after.ready_replicas == 0 and after.endpoint  # routing and record kept
    assert ("sleep", sleepy.name) in backend.calls and backend.servers[sleepy.name] == EndpointState.idle
    assert store.deployments.get(busy.id).status == D.ready and store.deployments.get(kept.id).status == D.ready
    # The reconciler's pass sees the backend at zero and leaves the record idle (no failure, no redeploy).
    assert lifecycle.refresh(store, cache, backend, settings, after).status == D.idle


def test_a_server_answering_a_long_request_is_not_idle(world: Any) -> None:
    store, backend, _, cache, settings = world
    busy = _ready(world, min_replicas=0, idle_seconds=60)
    _long_ago(store, busy)
    activity.begin(cache, busy.id, 600)  # a request whose answer takes longer than idle_seconds
    assert idle.sweep(store, cache, backend, settings) == []
    activity.end(cache, busy.id, 600)
    assert idle.sweep(store, cache, backend, settings) == [busy.id]


def test_an_adapter_on_a_shared_server_sleeps_and_wakes_with_it(world: Any) -> None:
    store, backend, sent, cache, settings = world
    host = _ready(world, min_replicas=0, idle_seconds=60)
    rider = service.deploy_fine_tuned(
        store, cache, sent, settings, Tenant(id="globex"), f"ft:{BASE}:globex:s:ftjob-globex", service.Sizing()
    )
    for deployment_id, action in sent.messages:
        lifecycle.handle(store, cache, backend, settings, deployment_id, action)
    assert store.deployments.get(rider.id).status == D.ready
    _long_ago(store, host)
    activity.touch(cache, rider.id)  # the adapter's traffic keeps the shared server up
    assert idle.sweep(store, cache, backend, settings) == []
    cache.delete(activity.last_key(rider.id))
    assert idle.sweep(store, cache, backend, settings) == [host.id]
    assert store.deployments.get(rider.id).status == D.idle

    asyncio.run(wake.hold(store, cache, backend, settings, store.deployments.get(rider.id), rider.model))
    assert store.deployments.get(host.id).status == D.ready and store.deployments.get(rider.id).status == D.ready
    assert backend.wakes == 1


def _asleep(world: Any) -> Deployment:
    store, backend, _sent, cache, settings = world
    made = _ready(world, min_replicas=0, idle_seconds=60)
    _long_ago(store, made)
    idle.sweep(store, cache, backend, settings)
    return store.deployments.get(made.id)


async def _many(world: Any, deployment: Deployment, n: int) -> list[Any]:
    store, backend, _sent, cache, settings = world
    held = [wake.hold(store, cache, backend, settings, deployment, deployment.model) for _ in range(n)]
    tasks = [asyncio.ensure_future(h) for h in held]
    await asyncio.sleep(0.1)
    lengths = cache.list_length(activity.held_key(deployment.name))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.1)  # the held entries are removed off the loop
    return [lengths, cache.list_length(activity.held_key(deployment.name)), *results]


def test_eight_requests_held_at_once_start_one_server_and_all_go_on_once_it_is_ready(world: Any) -> None:
    store, backend, _sent, _cache, _settings = world
    deployment = _asleep(world)
    started = time.monotonic()
    held_while, held_after, *results = asyncio.run(_many(world, deployment, 8))
    assert results == [None] * 8 and backend.wakes == 1
    assert held_while == 8 and held_after == 0  # the signal KEDA reads: one entry per held request
    assert time.monotonic() - started < backend.start_seconds + 1.5
    woken = store.deployments.get(deployment.id)
    assert woken.status == D.ready and woken.woken_at and woken.status_message is None


def test_two_processes_waking_one_deployment_start_one_server(world: Any) -> None:
    store, backend, _sent, _cache, _settings = world
    deployment = _asleep(world)
    runs = [threading.Thread(target=asyncio.run, args=(_many(world, deployment, 3),)) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(10)
    assert backend.wakes == 1 and store.deployments.get(deployment.id).status == D.ready


def test_a_failed_start_answers_every_held_request_with_a_503_naming_the_reason(world: Any) -> None:
    store, backend, _sent, _cache, _settings = world
    deployment = _asleep(world)
    backend.fail_with = "CUDA out of memory while loading the model"
    _, _, *results = asyncio.run(_many(world, deployment, 8))
    assert all(isinstance(r, ServiceUnavailable) for r in results), results
    assert {r.code for r in results} == {"deployment_failed"} and backend.wakes == 1
    assert all("CUDA out of memory" in str(r) for r in results)
    assert store.deployments.get(deployment.id).status == D.failed


def test_a_start_slower_than_the_wake_timeout_answers_503_in_bounded_time(world: Any) -> None:
    store, backend, _sent, cache, settings = world
    deployment = _asleep(world)
    backend.start_seconds = 30
    quick = settings.model_copy(update={"wake_timeout_seconds": 0.8})
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as slow:
        asyncio.run(wake.hold(store, cache, backend, quick, deployment, deployment.model))
    assert slow.value.code == "wake_timeout" and time.monotonic() - started < 3
    # Still starting: the record says it is waking, so the next request is held too rather than refused.
    assert wake.asleep(store.deployments.get(deployment.id))


def test_a_woken_deployment_is_timed_from_its_wake_up_not_its_creation(world: Any) -> None:
    store, backend, _sent, cache, settings = world
    deployment = _asleep(world)
    store.deployments.col.update_one({"_id": deployment.id}, {"$set": {"created_at": int(time.time()) - 7200}})
    backend.start_seconds = 30
    wake.wake_step(store, cache, backend, settings, deployment.id)
    after = lifecycle.refresh(store, cache, backend, settings, store.deployments.get(deployment.id))
    assert after.status == D.deploying and after.status_message == idle.WAKING  # not failed as overdue


def test_routing_holds_a_request_to_an_idle_deployment_and_then_routes_it(world: Any) -> None:
    store, backend, _sent, cache, settings = world
    deployment = _asleep(world)
    with pytest.raises(wake.Asleep):  # the sync path has nobody to hold the request: a 503 to retry
        routing.resolve(store, cache, backend, settings, "acme", BASE)
    route = asyncio.run(routing.resolve_async(store, cache, backend, settings, "acme", BASE))
    assert route.deployment_id == deployment.id and backend.wakes == 1 and route.sleeps
    assert activity.last_request(cache, [deployment.id]) is not None  # the request counts for the idle sweep


def test_an_idle_sagemaker_deployment_is_routed_for_its_invocations_to_scale_it_out(world: Any) -> None:
    store, backend, _sent, cache, settings = world
    deployment = _asleep(world)
    store.deployments.col.update_one({"_id": deployment.id}, {"$set": {"backend": "sagemaker"}})
    route = routing.resolve(store, cache, backend, settings, "acme", BASE)
    assert route.deployment_id == deployment.id and backend.wakes == 0


def test_a_proxied_request_to_a_sleeping_deployment_is_under_way_until_it_is_logged(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _, _, cache, _ = world
    monkeypatch.setattr(proxy_call, "get_cache", lambda: cache)
    route = routing.Route("dep-x", BASE, "http", url="http://127.0.0.1:9", sleeps=True)
    call = proxy_call.Call("acme", route, "/v1/chat/completions", "req-1", None)
    assert activity.in_flight(cache, ["dep-x"]) == 1
    call.record(store, 200)
    assert activity.in_flight(cache, ["dep-x"]) == 0 and activity.last_request(cache, ["dep-x"])
    proxy_call.Call("acme", routing.Route("dep-y", BASE, "http"), "/v1/chat/completions", "req-2", None)
    assert activity.in_flight(cache, ["dep-y"]) == 0  # a deployment that never sleeps costs no counting


def test_scaling_across_zero_on_eks_is_refused_since_its_wake_trigger_is_set_at_deploy(world: Any) -> None:
    store, backend, _, cache, settings = world
    made = _ready(world, min_replicas=1, max_replicas=2)
    store.deployments.col.update_one({"_id": made.id}, {"$set": {"backend": "eks"}})
    with pytest.raises(Conflict) as refused:
        service.scale(store, cache, backend, settings, "acme", made.id, 0, None)
    assert refused.value.param == "min_replicas" and "redeploy" in str(refused.value)
    assert service.scale(store, cache, backend, settings, "acme", made.id, 2, None).min_replicas == 2
