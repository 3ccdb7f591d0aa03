"""GET /v1/usage (per-model totals) and GET /v1/logs (the latest proxied requests), the caller's tenant only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from functions.api.deps import CurrentTenant, StoreDep
from functions.api.schemas import OPENAI_ERRORS
from functions.api.schemas_serving import LogList, LogOut, UsageOut, UsageRow
from functions.core.errors import InvalidRequest
from functions.core.models import InferenceLog

router = APIRouter(prefix="/v1", tags=["usage"], responses=OPENAI_ERRORS)


@router.get("/usage", response_model=UsageOut)
def usage(
    tenant: CurrentTenant,
    store: StoreDep,
    start_time: Annotated[int | None, Query(ge=0, description="Unix seconds, inclusive")] = None,
    end_time: Annotated[int | None, Query(ge=0, description="Unix seconds, exclusive")] = None,
) -> UsageOut:
    if start_time is not None and end_time is not None and end_time <= start_time:
        raise InvalidRequest("end_time must be after start_time", param="end_time")
    rows = [
        UsageRow(
            model=r["model"],
            requests=r["requests"],
            errors=r["errors"],
            prompt_tokens=r["prompt_tokens"],
            completion_tokens=r["completion_tokens"],
            total_tokens=r["prompt_tokens"] + r["completion_tokens"],
            average_latency_ms=round(r["latency_ms_total"] / r["requests"], 3) if r["requests"] else 0.0,
        )
        for r in store.inference_logs.usage(tenant.client_code, start_time, end_time)
    ]
    prompt, completion = sum(r.prompt_tokens for r in rows), sum(r.completion_tokens for r in rows)
    return UsageOut(
        start_time=start_time,
        end_time=end_time,
        data=rows,
        requests=sum(r.requests for r in rows),
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
    )


@router.get("/logs", response_model=LogList)
def logs(
    tenant: CurrentTenant,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    after: str | None = None,
    model: str | None = None,
) -> LogList:
    page = store.inference_logs.page(tenant.client_code, after, limit, model)
    data = [LogOut.of(InferenceLog.model_validate(d)) for d in page.items]
    return LogList(
        data=data, has_more=page.has_more, first_id=data[0].id if data else None, last_id=data[-1].id if data else None
    )
