"""Model → the caller's own ready deployment → where to send the request, cached in Redis.

Only the caller's deployment records are ever consulted, and the URL comes from the record the backend filled in,
never from the request: a tenant cannot make the control plane call anything but its own deployments (no SSRF).
The cache entry is dropped whenever a deployment of that model changes (functions/deployments/service.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from functions.compute.serving import ServingBackend
from functions.core.errors import NotFound, ServiceUnavailable
from functions.core.models import DeploymentStatus
from functions.core.settings import Settings
from functions.deployments.dispatch import refresh_quietly
from functions.deployments.service import route_key
from functions.store.cache import Cache
from functions.store.mongo import Store


@dataclass(frozen=True)
class Route:
    deployment_id: str
    model: str
    kind: str  # http | sagemaker
    url: str | None = None
    target: str | None = None
    component: str | None = None

    @classmethod
    def of(cls, data: dict[str, Any]) -> Route:
        return cls(
            deployment_id=str(data["deployment_id"]),
            model=str(data["model"]),
            kind=str(data.get("kind") or "http"),
            url=data.get("url"),
            target=data.get("target"),
            component=data.get("component"),
        )


def resolve(
    store: Store, cache: Cache, backend: ServingBackend, settings: Settings, client_code: str, model: str
) -> Route:
    key = route_key(client_code, model)
    cached = cache.get_json(key)
    if isinstance(cached, dict):
        return Route.of(cached)
    live = store.deployments.live_for_model(client_code, model)
    if not live:
        raise NotFound(
            f"model {model!r} has no deployment of yours; deploy it with POST /v1/deployments",
            param="model",
            code="model_not_found",
        )
    deployment = live[0]
    if deployment.status != DeploymentStatus.ready:
        deployment = refresh_quietly(
            store, backend, cache, settings, deployment
        )  # it may have come up since the last look
    if deployment.status != DeploymentStatus.ready or not deployment.endpoint:
        raise ServiceUnavailable(
            f"deployment {deployment.id} of model {model!r} is {deployment.status.value}; retry when it is ready",
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
    )
    cache.set_json(key, asdict(route), settings.routing_cache_ttl_seconds)
    return route
