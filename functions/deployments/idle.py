"""Scale to zero: the sweep that puts a deployment with `min_replicas: 0` to sleep after `idle_seconds` without
requests, and how deployment records follow their servers to zero and back.

A deployment at zero is `idle`: it keeps its record, adapters, routing and usage history; only its servers are gone.
The sweep runs with the reconciler (functions/deployments/resync.py) and moves `ready → idle` with a conditional
write before it stops anything, so a request that arrives meanwhile finds `idle` and wakes it
(functions/deployments/wake.py), never a route to a server being stopped. The local backend stops the server
process; KEDA (EKS) and Application Auto Scaling (SageMaker) scale to zero on their own, and their status moves a
record to `idle` too (`follow`). Adapters riding on a server sleep and wake with it (`mirror_host`).
"""

from __future__ import annotations

import time
from typing import Any

from functions.compute.serving import ScalesToZero, ServingBackend
from functions.core.models import Deployment, DeploymentStatus, now
from functions.core.observability import log
from functions.core.settings import Settings
from functions.deployments import activity
from functions.deployments.route_cache import invalidate_route
from functions.store.cache import Cache
from functions.store.mongo import Store

D = DeploymentStatus
WAKING = "waking up: a request is waiting for it"  # status_message of a deployment woken from idle until it is ready
MIN_IDLE_SECONDS = 5
MAX_IDLE_SECONDS = 7 * 86400


def idle_for(store: Store, cache: Cache, deployment: Deployment) -> float:
    """Seconds since the last request to the server's deployment or any adapter riding on it (or since it got
    ready or was woken, when no request time is known); 0 while one is under way."""
    ids = [deployment.id, *(r.id for r in store.deployments.riders(deployment.id))]
    if activity.in_flight(cache, ids):
        return 0.0
    last = activity.last_request(cache, ids) or 0.0
    return time.time() - max(last, float(deployment.ready_at or 0), float(deployment.woken_at or 0))


def sweep(store: Store, cache: Cache, backend: ServingBackend, settings: Settings) -> list[str]:
    """Put every ready, zero-minimum deployment idle past its `idle_seconds` to sleep; the ids put to sleep."""
    if not cache.available():  # without request times nothing can be called idle: keep serving
        return []
    slept = []
    for deployment in store.deployments.in_status([D.ready.value]):
        if not deployment.dedicated or deployment.min_replicas > 0:
            continue
        if idle_for(store, cache, deployment) >= deployment.idle_seconds and put_to_sleep(
            store, cache, backend, deployment
        ):
            slept.append(deployment.id)
    return slept


def put_to_sleep(store: Store, cache: Cache, backend: ServingBackend, deployment: Deployment) -> Deployment | None:
    """`ready → idle`, then stop its servers (where the control plane does that); None when it had moved on."""
    slept = store.deployments.transition(
        deployment.id, [D.ready.value], D.idle.value, status_message=None, ready_replicas=0
    )
    if slept is None:
        return None
    invalidate_route(cache, slept.client_code, slept.model)
    for rider in store.deployments.riders(slept.id):
        mirror_host(store, cache, rider, slept)
    if isinstance(backend, ScalesToZero):
        backend.sleep(slept.name)
    log("info", "deployment idle: scaled to zero", deployment_id=slept.id, idle_seconds=slept.idle_seconds)
    return slept


def follow(store: Store, cache: Cache, deployment: Deployment, fields: dict[str, Any]) -> Deployment:
    """The backend says the server is at zero: a ready record goes idle (KEDA or SageMaker scaled it in); a record
    being woken stays `deploying` until the server is back."""
    if deployment.status == D.ready:
        slept = store.deployments.transition(deployment.id, [D.ready.value], D.idle.value, **fields)
        if slept is not None:
            invalidate_route(cache, slept.client_code, slept.model)
            for rider in store.deployments.riders(slept.id):
                mirror_host(store, cache, rider, slept)
            return slept
    moving = [D.idle.value, D.deploying.value]
    return (
        store.deployments.update(deployment.id, moving, **fields) or store.deployments.get(deployment.id) or deployment
    )


def mirror_host(store: Store, cache: Cache, rider: Deployment, host: Deployment) -> Deployment:
    """An adapter on a shared server is idle while its server is, and wakes (to be re-attached) when it wakes."""
    if rider.dedicated:
        return rider
    if rider.status == D.ready and host.status == D.idle:
        moved = store.deployments.transition(rider.id, [D.ready.value], D.idle.value, status_message=None)
    elif rider.status == D.idle and host.status in (D.deploying, D.ready):
        moved = store.deployments.transition(
            rider.id, [D.idle.value], D.deploying.value, status_message=WAKING, woken_at=now()
        )
    else:
        return rider
    invalidate_route(cache, rider.client_code, rider.model)
    return moved or store.deployments.get(rider.id) or rider
