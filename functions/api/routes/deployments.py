"""/v1/deployments: deploy a base model or a fine-tuned adapter, list, retrieve (with a status refresh), scale,
delete. Status moves `pending → deploying → ready | failed → deleting → deleted`; with `min_replicas: 0`,
`ready → idle` after `idle_seconds` without requests, and `idle → deploying → ready` on the next request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from functions.api.deps import CallerDep
from functions.api.schemas import OPENAI_ERRORS, ListPage
from functions.api.schemas_serving import DeploymentCreate, DeploymentOut, DeploymentScale
from functions.deployments import service

router = APIRouter(prefix="/v1/deployments", tags=["deployments"], responses=OPENAI_ERRORS)


@router.post("")
def create_deployment(body: DeploymentCreate, caller: CallerDep) -> DeploymentOut:
    sizing = service.Sizing(
        body.gpu_count, body.min_replicas, body.max_replicas, body.prometheus_threshold, body.idle_seconds
    )
    made = service.deploy(
        caller.store,
        caller.cache,
        caller.queues,
        caller.settings,
        caller.tenant,
        body.model,
        sizing,
        dedicated=body.dedicated,
    )
    return DeploymentOut.of(made)


@router.get("")
def list_deployments(
    caller: CallerDep, after: str | None = None, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> ListPage[DeploymentOut]:
    page = service.list_page(caller.store, caller.client_code, after, limit)
    return ListPage[DeploymentOut].from_page(page, DeploymentOut.of)


@router.get("/{deployment_id}")
def retrieve_deployment(deployment_id: str, caller: CallerDep) -> DeploymentOut:
    found = service.retrieve(
        caller.store, caller.cache, caller.serving, caller.settings, caller.client_code, deployment_id
    )
    return DeploymentOut.of(found)


@router.post("/{deployment_id}/scale")
def scale_deployment(deployment_id: str, body: DeploymentScale, caller: CallerDep) -> DeploymentOut:
    scaled = service.scale(
        caller.store,
        caller.cache,
        caller.serving,
        caller.settings,
        caller.client_code,
        deployment_id,
        body.min_replicas,
        body.max_replicas,
    )
    return DeploymentOut.of(scaled)


@router.delete("/{deployment_id}")
def delete_deployment(deployment_id: str, caller: CallerDep) -> DeploymentOut:
    return DeploymentOut.of(
        service.delete(caller.store, caller.cache, caller.queues, caller.client_code, deployment_id)
    )
