"""Seeds 002-004's model routes through the control plane, one scheme for all: `/inference/{deployment_id}/{path}`
is `{path}` on the server of your deployment `deployment_id` (functions/deployments/proxy_seed.py lists them):

- an `llm` deployment: seed 003's `GET models`, `POST infer`, `POST infer/batch`; seed 002's `POST predict`,
  `POST predict/batch`, `GET info`, `GET status`;
- a `tabular` deployment (seed 004): `POST predict`, `predict/{model_type}`, `predict/{model_type}/{version}`,
  `GET logs`, `DELETE delete-models`, `POST models/{model_type}/versions` (multipart: `file`, `metadata`,
  `version`, `activate`), `GET models[/{model_type}[/{version}]]`, `PUT models/active`, `PUT models/{type}/active`.

Seed 001's `/inference/deploy/...` and `/inference/infer/{model_name}` keep their paths (registered first). Bodies
and answers are the seeds' own; the tenant is the caller's, whatever `X-Tenant-ID` the caller sends.
"""

from __future__ import annotations

import functools
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Header, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from functions.api.context import request_id_var
from functions.api.deps import CallerDep
from functions.api.routes.inference import ProxyRoute
from functions.api.schemas import SEED_PROXY_ERRORS, SeedError, _errors
from functions.deployments import activity, proxy_seed, wake
from functions.deployments.proxy_call import Call

# The control plane's own refusals come in seed 001's shape; the server's answers (errors included) in its seed's.
router = APIRouter(route_class=ProxyRoute, responses={**SEED_PROXY_ERRORS, **_errors(SeedError, 409)})
DeploymentId = Annotated[str, Path(description="a deployment id of yours (`dep-...`)")]
SeedPath = Annotated[str, Path(description="the seed route on the deployment's server, e.g. `infer/batch`")]


async def seed_route(
    request: Request,
    deployment_id: DeploymentId,
    path: SeedPath,
    caller: CallerDep,
    user: Annotated[str | None, Header(alias="X-User-ID", max_length=256)] = None,
) -> Response:
    method, store, path = request.method, caller.store, path.strip("/")
    find = functools.partial(proxy_seed.target, store, caller.client_code, deployment_id, method, path)
    try:  # a MongoDB read: in a worker thread, as the proxy's route lookups on a miss
        deployment = await run_in_threadpool(find)
    except wake.Asleep as asleep:  # scaled to zero: held while it wakes, as the /v1 proxy holds (routing.py)
        await wake.hold(
            store, caller.cache, caller.serving, caller.settings, asleep.deployment, asleep.deployment.model
        )
        deployment = await run_in_threadpool(find)
    activity.touch(caller.cache, deployment.id)
    call = Call(caller.client_code, proxy_seed.route_of(deployment), f"/{path}", request_id_var.get(), user)
    # Seed 004's `api_key` query parameter is the caller's Mini Studio key here: it stays with the control plane.
    query = urlencode([(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k != "api_key"])
    body = await request.body()
    content_type = request.headers.get("content-type")
    return await proxy_seed.forward(call, method, query, body, content_type, store, caller.settings)


for _method in ("GET", "POST", "PUT", "DELETE"):
    router.add_api_route(
        "/{deployment_id}/{path:path}",
        seed_route,
        methods=[_method],
        response_model=None,
        operation_id=f"seed_route_{_method.lower()}",
        summary=f"{_method} a seed route on your deployment's server",
    )
