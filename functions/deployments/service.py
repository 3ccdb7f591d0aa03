"""Deployments: create (base model, or a fine-tuned model as an adapter), read with a status refresh, list, scale,
delete.

The API writes the record (`pending`) and sends `{"deployment_id", "action"}` on the dispatch queue; the dispatch
worker talks to the serving backend (functions/deployments/dispatch.py). Reads of a deployment in a moving state
(`deploying`, `deleting`) ask the backend where it stands, so a client polling GET sees `ready` as soon as the server
is; the reconciler does the same for everything on a schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from functions.compute.serving import ServingBackend, serving_name
from functions.core import ids, model_kinds
from functions.core.errors import Conflict, InvalidRequest
from functions.core.models import Deployment, DeploymentStatus, Tenant
from functions.core.settings import Settings
from functions.deployments.idle import MAX_IDLE_SECONDS, MIN_IDLE_SECONDS
from functions.deployments.lifecycle import apply, refresh_quietly
from functions.deployments.route_cache import invalidate_route
from functions.models.artifacts import fine_tuned
from functions.store.cache import Cache
from functions.store.mongo import Store
from functions.store.paging import Page
from functions.store.queues import Queues

MAX_REPLICAS = 32
MAX_GPUS = 8
DELETABLE = [*(s.value for s in DeploymentStatus if s.live), DeploymentStatus.failed.value]


@dataclass(frozen=True)
class Sizing:
    gpu_count: int = 1
    min_replicas: int = 1
    max_replicas: int = 1
    prometheus_threshold: float = 5.0
    idle_seconds: int | None = None  # min_replicas 0: idle this long, it scales to zero (None: the settings' default)

    def check(self) -> Sizing:
        if not 0 <= self.gpu_count <= MAX_GPUS:
            raise InvalidRequest(f"gpu_count must be between 0 and {MAX_GPUS}", param="gpu_count")
        if not 0 <= self.min_replicas <= MAX_REPLICAS:
            raise InvalidRequest(f"min_replicas must be between 0 and {MAX_REPLICAS}", param="min_replicas")
        if not max(1, self.min_replicas) <= self.max_replicas <= MAX_REPLICAS:
            raise InvalidRequest(
                f"max_replicas must be at least min_replicas (and 1) and at most {MAX_REPLICAS}", param="max_replicas"
            )
        if not self.prometheus_threshold > 0:
            raise InvalidRequest("prometheus_threshold must be greater than 0", param="prometheus_threshold")
        if self.idle_seconds is not None and not MIN_IDLE_SECONDS <= self.idle_seconds <= MAX_IDLE_SECONDS:
            raise InvalidRequest(
                f"idle_seconds must be between {MIN_IDLE_SECONDS} and {MAX_IDLE_SECONDS}", param="idle_seconds"
            )
        return self

    def fields(self, settings: Settings) -> dict[str, Any]:
        """The deployment record's sizing fields, checked."""
        return {**self.check().__dict__, "idle_seconds": self.idle_seconds or settings.deployment_idle_seconds}


def deploy(
    store: Store,
    cache: Cache,
    queues: Queues,
    settings: Settings,
    tenant: Tenant,
    model: str,
    sizing: Sizing,
    *,
    dedicated: bool = False,
) -> Deployment:
    """POST /v1/deployments: a base model gets a server; a fine-tuned `ft:` model is served as an adapter."""
    if model.startswith("ft:"):
        return deploy_fine_tuned(store, cache, queues, settings, tenant, model, sizing, dedicated=dedicated)
    return deploy_base(store, cache, queues, settings, tenant, model, sizing)


def deploy_base(
    store: Store,
    cache: Cache,
    queues: Queues,
    settings: Settings,
    tenant: Tenant,
    model: str,
    sizing: Sizing,
    source: str = "api",
) -> Deployment:
    model = model_kinds.canonical(model)
    servable = [*settings.base_models, model_kinds.EMBEDDING_MODEL, model_kinds.TABULAR_MODEL]
    if model not in servable:
        raise InvalidRequest(
            f"model {model!r} is not a model this platform serves; choose one of {servable}", param="model"
        )
    deployment_id = ids.new_id("dep-")
    profile = model_kinds.profile_of(model)
    deployment = Deployment(
        id=deployment_id,
        client_code=tenant.client_code,
        model=model,
        # The embedding model runs on an `llm` server of the first base model; a tabular server has no LLM.
        base_model=model if model in settings.base_models or profile == "tabular" else settings.base_models[0],
        kind="base",
        profile=profile,
        dedicated=True,
        name=serving_name("base", tenant.client_code, model, deployment_id),
        backend=settings.compute_backend,
        source=source,
        **sizing.fields(settings),
    )
    return _submit(store, cache, queues, deployment)


def deploy_fine_tuned(
    store: Store,
    cache: Cache,
    queues: Queues,
    settings: Settings,
    tenant: Tenant,
    model_id: str,
    sizing: Sizing,
    *,
    dedicated: bool = False,
    source: str = "api",
) -> Deployment:
    """An adapter rides on a ready deployment of its base model when one exists (the tenant's own first, then any:
    many tenants' adapters share one server), else it gets its own server with the adapter loaded at start."""
    model = fine_tuned(store, tenant.client_code, model_id)
    deployment_id = ids.new_id("dep-")
    hosts = [] if dedicated else store.deployments.hosts_for(model.base_model)
    hosts.sort(key=lambda h: h.client_code != tenant.client_code)
    host = hosts[0] if hosts else None
    deployment = Deployment(
        id=deployment_id,
        client_code=tenant.client_code,
        model=model.id,
        base_model=model.base_model,
        kind="fine_tuned",
        dedicated=host is None,
        name=host.name if host else serving_name("ft", tenant.client_code, model.base_model, deployment_id),
        host_id=host.id if host else None,
        adapter_uri=model.adapter_uri,
        backend=settings.compute_backend,
        source=source,
        **sizing.fields(settings),
    )
    return _submit(store, cache, queues, deployment)


def _submit(store: Store, cache: Cache, queues: Queues, deployment: Deployment) -> Deployment:
    store.deployments.insert(deployment)  # written before the message: the reconciler re-sends a lost one
    queues.send_deployment(deployment.id, "deploy")
    invalidate_route(cache, deployment.client_code, deployment.model)
    return deployment


def get(store: Store, client_code: str, deployment_id: str) -> Deployment:
    return store.deployments.own(deployment_id, client_code, "deployment", "deployment_id")


def list_page(store: Store, client_code: str, after: str | None, limit: int) -> Page[Deployment]:
    return store.deployments.page(client_code, after, limit)


def retrieve(
    store: Store, cache: Cache, backend: ServingBackend, settings: Settings, client_code: str, deployment_id: str
) -> Deployment:
    """A deployment on the move (`deploying`, `deleting`) is asked where it stands, so a client polling sees
    `ready` as soon as the server is."""
    deployment = get(store, client_code, deployment_id)
    if deployment.status in (DeploymentStatus.deploying, DeploymentStatus.deleting):
        deployment = refresh_quietly(store, cache, backend, settings, deployment)
    return deployment


def scale(
    store: Store,
    cache: Cache,
    backend: ServingBackend,
    settings: Settings,
    client_code: str,
    deployment_id: str,
    min_replicas: int | None,
    max_replicas: int | None,
) -> Deployment:
    """New replica bounds for a live deployment with a server of its own; a bound left out keeps its value."""

    deployment = get(store, client_code, deployment_id)
    low = deployment.min_replicas if min_replicas is None else min_replicas
    high = deployment.max_replicas if max_replicas is None else max_replicas
    sizing = Sizing(deployment.gpu_count, low, high, deployment.prometheus_threshold).check()
    if not deployment.dedicated:
        raise Conflict("this adapter rides on a shared server; deploy it with `dedicated: true` to scale it")
    if deployment.status not in (DeploymentStatus.deploying, DeploymentStatus.ready):
        raise Conflict(f"deployment {deployment.id} is {deployment.status.value}; only a live one can be scaled")
    if deployment.backend == "eks" and (low == 0) != (deployment.min_replicas == 0):
        # Its ScaledObject's wake trigger (functions/compute/k8s/wake_trigger.py) is rendered at deploy time.
        raise Conflict(
            "on EKS, whether a deployment may scale to zero is set when it is deployed: redeploy it with "
            "the min_replicas you want",
            param="min_replicas",
        )
    status = backend.scale(deployment.name, sizing.min_replicas, sizing.max_replicas)
    moved = store.deployments.update(
        deployment.id, [deployment.status.value], min_replicas=sizing.min_replicas, max_replicas=sizing.max_replicas
    )
    return apply(store, cache, backend, settings, moved or deployment, status)


def delete(store: Store, cache: Cache, queues: Queues, client_code: str, deployment_id: str) -> Deployment:
    deployment = get(store, client_code, deployment_id)
    if deployment.status in (DeploymentStatus.deleting, DeploymentStatus.deleted):
        return deployment  # deleting twice is not an error
    moved = store.deployments.transition(deployment.id, DELETABLE, DeploymentStatus.deleting.value)
    if moved is None:  # moved meanwhile (to deleting/deleted by another call): report where it is
        return get(store, client_code, deployment_id)
    invalidate_route(cache, moved.client_code, moved.model)
    queues.send_deployment(moved.id, "delete")
    return moved


def undeploy_model(store: Store, cache: Cache, queues: Queues, client_code: str, model_id: str) -> list[Deployment]:
    """Delete every live deployment of a model (deleting a fine-tuned model undeploys it)."""
    return [
        delete(store, cache, queues, client_code, d.id) for d in store.deployments.live_for_model(client_code, model_id)
    ]
