"""Model → the caller's own ready deployment → where to send the request, cached in Redis.

Only the caller's deployment records are ever consulted, and the URL comes from the record the backend filled in,
never from the request: a tenant cannot make the control plane call anything but its own deployments (no SSRF).
The cache entry is dropped whenever a deployment of that model changes (functions/deployments/service.py).
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import anyio.to_thread

from functions.compute.serving import ServingBackend
from functions.core.errors import NotFound, ServiceUnavailable
from functions.core.models import Deployment, DeploymentStatus
from functions.core.settings import Settings
from functions.deployments import activity, wake
from functions.deployments.lifecycle import refresh_quietly
from functions.deployments.route_cache import NOT_READ, NotRead, Prefetched, read_route, route_key
from functions.store.cache import Cache
from functions.store.mongo import Store

_LOOK_BACK = 100  # the tenant's newest deployments searched for a failed one of the asked model
MISS_THREADS = 16  # route lookups on a miss running at once, per event loop
_misses: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[dict[str, asyncio.Future[Route]], anyio.CapacityLimiter]
] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Route:
    deployment_id: str
    model: str
    kind: str  # http | sagemaker
    url: str | None = None
    target: str | None = None
    component: str | None = None
    sleeps: bool = False  # its server may scale to zero: requests under way are counted (activity.begin)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Route:
        return cls(
            deployment_id=str(data["deployment_id"]),
            model=str(data["model"]),
            kind=str(data.get("kind") or "http"),
            url=data.get("url"),
            target=data.get("target"),
            component=data.get("component"),
            sleeps=bool(data.get("sleeps")),
        )


async def resolve_async(
    store: Store,
    cache: Cache,
    backend: ServingBackend,
    settings: Settings,
    client_code: str,
    model: str,
    prefetched: Prefetched = NOT_READ,
) -> Route:
    """`resolve` for the proxy, which also holds a request to a deployment at zero while it wakes up
    (functions/deployments/wake.py) and notes each request's time for the idle sweep (activity.touch).
    `prefetched`: the cache entry when the caller read it already: a hit then costs no Redis read here; a miss or a
    tombstone takes the long way, as one read here would."""
    read = None if isinstance(prefetched, NotRead) else read_route(cache, route_key(client_code, model), prefetched)
    try:
        route = (
            Route.of(read)
            if isinstance(read, dict)
            else await _lookup(store, cache, backend, settings, client_code, model)
        )
    except wake.Asleep as asleep:
        await wake.hold(store, cache, backend, settings, asleep.deployment, model)
        route = await _lookup(store, cache, backend, settings, client_code, model)
    activity.touch(cache, route.deployment_id)
    return route


async def _lookup(
    store: Store, cache: Cache, backend: ServingBackend, settings: Settings, client_code: str, model: str
) -> Route:
    """The route, for the proxy on the event loop: a cache hit is one Redis read, inline (a thread hop
    would cost more than the read; the auth dependency does the same). A miss reads MongoDB and may ask the backend
    (a Kubernetes call may take its whole timeout), so it runs in a worker thread, where a slow backend delays only
    the requests for that model: concurrent misses for one tenant's model share one lookup, and all misses together
    hold at most MISS_THREADS threads, counted apart from the 40 that FastAPI's sync routes share (anyio's default
    limiter), so a hung backend cannot starve those."""
    key = route_key(client_code, model)
    cached = cache.get_json(key)
    if isinstance(cached, dict):
        return Route.of(cached)
    loop = asyncio.get_running_loop()
    running, limiter = _misses.get(loop) or _misses.setdefault(loop, ({}, anyio.CapacityLimiter(MISS_THREADS)))
    lookup = running.get(key)
    if lookup is None:
        miss = functools.partial(_resolve_miss, store, cache, backend, settings, client_code, model)
        lookup = running[key] = asyncio.ensure_future(anyio.to_thread.run_sync(miss, limiter=limiter))
        lookup.add_done_callback(functools.partial(_finished, running, key))
    # Shielded: a caller that goes away must not cancel the lookup the others wait for.
    return await asyncio.shield(lookup)


def _finished(running: dict[str, asyncio.Future[Route]], key: str, lookup: asyncio.Future[Route]) -> None:
    running.pop(key, None)
    if not lookup.cancelled():
        lookup.exception()  # retrieved: when every waiter has gone, asyncio would log it as never retrieved


def resolve(
    store: Store, cache: Cache, backend: ServingBackend, settings: Settings, client_code: str, model: str
) -> Route:
    cached = cache.get_json(route_key(client_code, model))
    if isinstance(cached, dict):
        return Route.of(cached)
    return _resolve_miss(store, cache, backend, settings, client_code, model)


def _resolve_miss(
    store: Store, cache: Cache, backend: ServingBackend, settings: Settings, client_code: str, model: str
) -> Route:
    key = route_key(client_code, model)
    live = store.deployments.live_for_model(client_code, model)
    if not live:
        failed = _failed(store, client_code, model)
        if failed is not None:
            raise _deployment_failed(failed, model)
        raise NotFound(
            f"model {model!r} has no deployment of yours; deploy it with POST /v1/deployments",
            param="model",
            code="model_not_found",
        )
    deployment = live[0]
    if deployment.status != DeploymentStatus.ready:  # it may have come up since the last look
        deployment = refresh_quietly(store, cache, backend, settings, deployment)
    if deployment.status == DeploymentStatus.failed:  # it failed while we looked
        raise _deployment_failed(deployment, model)
    if wake.asleep(deployment):
        raise wake.Asleep(deployment, model)
    # An idle SageMaker deployment is routed: the proxy's invocations are what scales it out from zero.
    if deployment.status not in (DeploymentStatus.ready, DeploymentStatus.idle) or not deployment.endpoint:
        doing = deployment.status.value + (f" ({deployment.status_message})" if deployment.status_message else "")
        raise ServiceUnavailable(
            f"deployment {deployment.id} of model {model!r} is {doing}; retry when it is ready",
            param="model",
            code="model_not_ready",
        )
    endpoint = deployment.endpoint
    route = Route(
        deployment_id=deployment.id,
        model=model,
        kind=str(endpoint.get("kind") or "http"),
        url=endpoint.get("url"),
        target=endpoint.get("target"),
        component=endpoint.get("component"),
        sleeps=_sleeps(store, deployment),
    )
    cache.set_json(key, asdict(route), settings.routing_cache_ttl_seconds)
    return route


def _sleeps(store: Store, deployment: Deployment) -> bool:
    server = deployment if deployment.dedicated else store.deployments.get(deployment.host_id or "")
    return server is not None and server.min_replicas == 0


def _failed(store: Store, client_code: str, model: str) -> Deployment | None:
    """The tenant's newest deployment of `model` when that one failed (a deleted one means: not deployed)."""
    for doc in store.deployments.page(client_code, None, _LOOK_BACK).items:
        if doc.get("model") == model:
            newest = Deployment.model_validate(doc)
            return newest if newest.status == DeploymentStatus.failed else None
    return None


def _deployment_failed(deployment: Deployment, model: str) -> ServiceUnavailable:
    why = (deployment.error or {}).get("message") or "no reason recorded"
    return ServiceUnavailable(
        f"your deployment {deployment.id} of model {model!r} failed: {why}; redeploy it with POST /v1/deployments",
        param="model",
        code="deployment_failed",
    )
