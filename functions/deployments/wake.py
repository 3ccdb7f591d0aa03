"""Wake on request: the proxy holds a request to an idle deployment while one server starts, then answers it.

Routing (functions/deployments/routing.py) raises `Asleep` for a deployment at zero (or already waking); the proxy
awaits `hold`. Every request held for one deployment in this process awaits one shared wake-up task, and the
conditional write `idle → deploying` (status_message WAKING) lets exactly one caller, across processes, start the
server; the others watch the record. Each held request is also an entry in a Redis list for as long as it waits
(`activity.held_key`): on EKS, KEDA's Redis scaler reads that list to scale the vLLM Deployment out of zero.

Readiness reaches the record at once on the local backend (its supervisor reports /ready, functions/deployments/
watch.py); for the other backends the wake-up asks the backend itself every second. The wait is bounded by
WAKE_TIMEOUT_SECONDS; a start that fails answers every held request with a 503 naming the reason, and a deployment
deleted meanwhile with a 404. Nothing here blocks the event loop: store and backend calls run in worker threads.
SageMaker endpoints are not held here: the proxy invokes them and retries while copies come back
(functions/deployments/proxy_sagemaker.py), since the invocations that fail are what AWS's scale-out alarm counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import weakref

import anyio.to_thread

from functions.compute.serving import EndpointState, EndpointStatus, ScalesToZero, ServingBackend
from functions.core import ids
from functions.core.errors import NotFound, ServiceUnavailable
from functions.core.models import Deployment, DeploymentStatus, now
from functions.core.observability import log
from functions.core.settings import Settings
from functions.deployments import activity, idle
from functions.deployments.lifecycle import apply, refresh_quietly
from functions.deployments.route_cache import invalidate_route
from functions.store.cache import Cache
from functions.store.mongo import Store

D = DeploymentStatus
POLL_SECONDS = 0.1  # how often a held request's wake-up reads the record
BACKEND_POLL_SECONDS = 1.0  # how often it asks the backend (and makes sure the server is coming up)
_wakes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Future[None]]] = (
    weakref.WeakKeyDictionary()
)


class Asleep(ServiceUnavailable):
    """Routing found the deployment at zero or waking; the proxy holds the request (`hold`). Where nothing holds it
    (a sync caller), it is a plain 503 to retry."""

    def __init__(self, deployment: Deployment, model: str) -> None:
        super().__init__(
            f"deployment {deployment.id} of model {model!r} is idle (scaled to zero) and waking up; retry shortly",
            param="model",
            code="model_not_ready",
        )
        self.deployment = deployment


def asleep(deployment: Deployment) -> bool:
    """At zero, or being woken from zero: a request for it is held, not refused."""
    waking = deployment.status == D.deploying and deployment.status_message == idle.WAKING
    return (deployment.status == D.idle or waking) and deployment.backend != "sagemaker"


async def hold(
    store: Store, cache: Cache, backend: ServingBackend, settings: Settings, deployment: Deployment, model: str
) -> None:
    """Return once the deployment is ready; raise a 503 (or 404) when it cannot be, within WAKE_TIMEOUT_SECONDS."""
    loop = asyncio.get_running_loop()
    running = _wakes.get(loop)
    if running is None:
        running = _wakes[loop] = {}
    waking = running.get(deployment.id)
    if waking is None:
        waking = running[deployment.id] = asyncio.ensure_future(
            _wake(store, cache, backend, settings, deployment.id, model)
        )
        waking.add_done_callback(functools.partial(_finished, running, deployment.id))
    key, token = activity.held_key(deployment.name), ids.new_id("held-")
    ttl = int(settings.wake_timeout_seconds) + 60
    await anyio.to_thread.run_sync(cache.list_push, key, token, ttl)
    try:
        await asyncio.shield(waking)  # a caller that goes away must not cancel the wake-up the others wait for
    finally:
        # Not awaited: it also runs when this request is being cancelled.
        loop.run_in_executor(None, cache.list_remove, key, token)
    activity.forget(deployment.id)


def _finished(running: dict[str, asyncio.Future[None]], key: str, waking: asyncio.Future[None]) -> None:
    running.pop(key, None)
    if not waking.cancelled():
        waking.exception()  # retrieved: when every waiter has gone, asyncio would log it as never retrieved


async def _wake(
    store: Store, cache: Cache, backend: ServingBackend, settings: Settings, deployment_id: str, model: str
) -> None:
    started = time.monotonic()
    deadline = started + settings.wake_timeout_seconds
    asked = float("-inf")
    while True:
        if time.monotonic() - asked >= BACKEND_POLL_SECONDS:
            asked = time.monotonic()
            step = functools.partial(wake_step, store, cache, backend, settings, deployment_id)
            found = await anyio.to_thread.run_sync(step)
        else:
            found = await anyio.to_thread.run_sync(store.deployments.get, deployment_id)
        if found is not None and found.status == D.ready:
            log("info", "deployment woke up", deployment_id=deployment_id, seconds=round(time.monotonic() - started, 3))
            return
        _check(found, deployment_id, model)
        if time.monotonic() >= deadline:
            raise ServiceUnavailable(
                f"deployment {deployment_id} of model {model!r} did not wake up within "
                f"{settings.wake_timeout_seconds:g} s (WAKE_TIMEOUT_SECONDS); its server is still starting: retry soon",
                param="model",
                code="wake_timeout",
            )
        await asyncio.sleep(POLL_SECONDS)


def _check(found: Deployment | None, deployment_id: str, model: str) -> None:
    if found is None or found.status in (D.deleting, D.deleted):
        raise NotFound(f"deployment {deployment_id} of model {model!r} was deleted while waking up", param="model")
    if found.status == D.failed:
        why = (found.error or {}).get("message") or "no reason recorded"
        raise ServiceUnavailable(
            f"your deployment {deployment_id} of model {model!r} failed to wake up from idle: {why}; "
            "redeploy it with POST /v1/deployments",
            param="model",
            code="deployment_failed",
        )


def wake_step(
    store: Store, cache: Cache, backend: ServingBackend, settings: Settings, deployment_id: str
) -> Deployment | None:
    """One idempotent step of a wake-up (any process may run it, any number of times): wake the server if it is
    idle (the caller whose conditional write wins starts it), start it again if a sleep raced the start, and move
    the record to where its backend is."""
    deployment = store.deployments.get(deployment_id)
    if deployment is None:
        return None
    server = deployment if deployment.dedicated else store.deployments.get(deployment.host_id or "")
    if server is not None and server.status == D.idle:
        woke = store.deployments.transition(
            server.id, [D.idle.value], D.deploying.value, status_message=idle.WAKING, woken_at=now()
        )
        if woke is not None:
            invalidate_route(cache, woke.client_code, woke.model)
            for rider in store.deployments.riders(woke.id):
                idle.mirror_host(store, cache, rider, woke)
            log("info", "deployment waking up on a request", deployment_id=woke.id)
            _start(store, cache, backend, settings, woke)
    elif (
        server is not None
        and asleep(server)
        and isinstance(backend, ScalesToZero)
        and backend.status(server.name).state == EndpointState.idle  # a sleep stopped the server this wake started
    ):
        _start(store, cache, backend, settings, server)
    current = store.deployments.get(deployment_id)
    return None if current is None else refresh_quietly(store, cache, backend, settings, current)


def _start(store: Store, cache: Cache, backend: ServingBackend, settings: Settings, server: Deployment) -> None:
    if not isinstance(backend, ScalesToZero):
        return  # KEDA and SageMaker start replicas on the signals they read
    try:
        status = backend.wake(server.name)
    except Exception as exc:  # the server could not even be started: every held request hears why
        log("warning", "waking a deployment failed", deployment_id=server.id, error=repr(exc))
        status = EndpointStatus(server.name, EndpointState.failed, message=f"could not start its server: {exc}")
    with contextlib.suppress(Exception):  # the next step applies it again
        apply(store, cache, backend, settings, server, status)
