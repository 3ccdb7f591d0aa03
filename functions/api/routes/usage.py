"""GET /v1/usage (per-model totals) and GET /v1/logs (the latest proxied requests), the caller's tenant only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from functions.api.deps import CallerDep
from functions.api.schemas import OPENAI_ERRORS, ListPage
from functions.api.schemas_serving import LogOut, UsageOut
from functions.deployments import usage as service

router = APIRouter(prefix="/v1", tags=["usage"], responses=OPENAI_ERRORS)


@router.get("/usage")
def usage(
    caller: CallerDep,
    start_time: Annotated[int | None, Query(ge=0, description="Unix seconds, inclusive")] = None,
    end_time: Annotated[int | None, Query(ge=0, description="Unix seconds, exclusive")] = None,
) -> UsageOut:
    return UsageOut.of(service.usage(caller.store, caller.client_code, start_time, end_time))


@router.get("/logs")
def logs(
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    after: str | None = None,
    model: str | None = None,
) -> ListPage[LogOut]:
    page = service.logs(caller.store, caller.client_code, after, limit, model)
    return ListPage[LogOut].from_page(page, LogOut.of)
