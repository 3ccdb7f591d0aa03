"""/v1/deployments: deploy a base model or a fine-tuned adapter, list, retrieve (with a status refresh), scale,
delete. Status moves `pending → deploying → ready | failed → deleting → deleted`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from functions.api.deps import CacheDep, CurrentTenant, QueuesDep, ServingDep, SettingsDep, StoreDep
from functions.api.schemas import OPENAI_ERRORS
from functions.api.schemas_serving import DeploymentCreate, DeploymentList, DeploymentOut, DeploymentScale
from functions.core.errors import Conflict
from functions.core.models import Deployment, DeploymentStatus
from functions.deployments import service
from functions.deployments.dispatch import apply, refresh_quietly

router = APIRouter(prefix="/v1/deployments", tags=["deployments"], responses=OPENAI_ERRORS)


@router.post("", response_model=DeploymentOut)
def create_deployment(
    body: DeploymentCreate,
    tenant: CurrentTenant,
    store: StoreDep,
    queues: QueuesDep,
    cache: CacheDep,
    settings: SettingsDep,
) -> DeploymentOut:
    sizing = service.Sizing(body.gpu_count, body.min_replicas, body.max_replicas, body.prometheus_threshold)
    if body.model.startswith("ft:"):
        made = service.deploy_fine_tuned(
            store, queues, cache, settings, tenant, body.model, sizing, dedicated=body.dedicated
        )
    else:
        made = service.deploy_base(store, queues, cache, settings, tenant, body.model, sizing)
    return DeploymentOut.of(made)


@router.get("", response_model=DeploymentList)
def list_deployments(
    tenant: CurrentTenant,
    store: StoreDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DeploymentList:
    page = store.deployments.page(tenant.client_code, after, limit)
    data = [DeploymentOut.of(Deployment.model_validate(d)) for d in page.items]
    return DeploymentList(
        data=data,
        has_more=page.has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


@router.get("/{deployment_id}", response_model=DeploymentOut)
def retrieve_deployment(
    deployment_id: str,
    tenant: CurrentTenant,
    store: StoreDep,
    cache: CacheDep,
    backend: ServingDep,
    settings: SettingsDep,
) -> DeploymentOut:
    deployment = service.get(store, tenant.client_code, deployment_id)
    if deployment.status in (DeploymentStatus.deploying, DeploymentStatus.deleting):
        deployment = refresh_quietly(store, backend, cache, settings, deployment)
    return DeploymentOut.of(deployment)


@router.post("/{deployment_id}/scale", response_model=DeploymentOut)
def scale_deployment(
    deployment_id: str,
    body: DeploymentScale,
    tenant: CurrentTenant,
    store: StoreDep,
    cache: CacheDep,
    backend: ServingDep,
    settings: SettingsDep,
) -> DeploymentOut:
    deployment = service.get(store, tenant.client_code, deployment_id)
    low = deployment.min_replicas if body.min_replicas is None else body.min_replicas
    high = deployment.max_replicas if body.max_replicas is None else body.max_replicas
    sizing = service.Sizing(deployment.gpu_count, low, high, deployment.prometheus_threshold).check()
    if not deployment.dedicated:
        raise Conflict("this adapter rides on a shared server; deploy it with `dedicated: true` to scale it")
    if deployment.status not in (DeploymentStatus.deploying, DeploymentStatus.ready):
        raise Conflict(f"deployment {deployment.id} is {deployment.status.value}; only a live one can be scaled")
    status = backend.scale(deployment.name, sizing.min_replicas, sizing.max_replicas)
    moved = store.deployments.update(
        deployment.id, [deployment.status.value], min_replicas=sizing.min_replicas, max_replicas=sizing.max_replicas
    )
    return DeploymentOut.of(apply(store, backend, cache, settings, moved or deployment, status))


@router.delete("/{deployment_id}", response_model=DeploymentOut)
def delete_deployment(
    deployment_id: str, tenant: CurrentTenant, store: StoreDep, queues: QueuesDep, cache: CacheDep
) -> DeploymentOut:
    return DeploymentOut.of(service.delete(store, queues, cache, tenant.client_code, deployment_id))
