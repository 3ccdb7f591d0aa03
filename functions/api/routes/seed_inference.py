"""Seed 001's inference routes: POST /inference/deploy/base, /inference/deploy/fine_tuned (answer at once with
the seed's keys plus the deployment id; status `pending`) and /inference/infer/{model_name} (the body goes to the
model server's /predict; `X-User-ID` labels the end user in logs and usage)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header
from starlette.responses import Response

from functions.api.context import request_id_var
from functions.api.deps import Caller, CallerDep, ProxyCallerDep
from functions.api.routes import seed_models
from functions.api.routes.inference import ProxyRoute
from functions.api.schemas import SEED_PROXY_ERRORS
from functions.api.schemas_serving import SeedBaseDeploy, SeedDeploy, SeedDeployOut, SeedFineTunedDeploy
from functions.core.models import Deployment
from functions.deployments import proxy, routing, service
from functions.deployments.public import own_name
from functions.deployments.weights import resolve_weights

router = APIRouter(prefix="/inference", tags=["inference (seed 001)"], responses=SEED_PROXY_ERRORS)


def _out(d: Deployment) -> SeedDeployOut:
    # An adapter on a shared server answers with its own name: the server's may be another tenant's.
    return SeedDeployOut(status=d.status.value, deployment=own_name(d), deployment_id=d.id, model=d.model)


@router.post("/deploy/base", response_model=SeedDeployOut)
def deploy_base(body: SeedBaseDeploy, caller: CallerDep) -> SeedDeployOut:
    caller.own(body.client_code)
    return _deployed(caller, service.deploy_base, body.model_id, body)


@router.post("/deploy/fine_tuned", response_model=SeedDeployOut)
def deploy_fine_tuned(body: SeedFineTunedDeploy, caller: CallerDep) -> SeedDeployOut:
    caller.own(body.client_code)
    model = resolve_weights(caller.store, caller.client_code, body.base_model, body.fine_tuned_weights_path)
    return _deployed(caller, service.deploy_fine_tuned, model.id, body)


def _deployed(caller: Caller, deploy: Callable[..., Deployment], model: str, body: SeedDeploy) -> SeedDeployOut:
    """`deploy` (base or fine-tuned) for the caller, from a seed request."""
    made = deploy(
        caller.store, caller.cache, caller.queues, caller.settings, caller.tenant, model, _sizing(body), source="seed"
    )
    return _out(made)


def _sizing(body: SeedDeploy) -> service.Sizing:
    return service.Sizing(body.gpu_count, body.min_replicas, body.max_replicas, body.prometheus_threshold)


# The proxy route's answers carry the control plane's overhead, as /v1's do (functions/api/routes/inference.py).
_proxy = APIRouter(route_class=ProxyRoute)


@_proxy.post("/infer/{model_name:path}", response_model=None)
async def infer(
    model_name: str,
    body: Annotated[dict[str, Any], Body()],
    caller: ProxyCallerDep,
    user: Annotated[str | None, Header(alias="X-User-ID")] = None,
) -> Response:
    store, settings, entry = caller.store, caller.settings, caller.route_entry(model_name)
    route = await routing.resolve_async(
        store, caller.cache, caller.serving, settings, caller.client_code, model_name, entry
    )
    call = proxy.Call(caller.client_code, route, "/predict", request_id_var.get(), user)
    return await proxy.forward(call, body, store, settings)


router.include_router(_proxy)
# Seeds 002-004's routes at /inference/{deployment_id}/...: after seed 001's, whose paths they must not shadow.
router.include_router(seed_models.router)
