"""What a tenant's inference calls cost: per-model totals over a time window (/v1/usage) and the latest calls
(/v1/logs). The control plane logs every call it proxies (functions/deployments/proxy.py)."""

from __future__ import annotations

from dataclasses import dataclass

from functions.core.errors import InvalidRequest
from functions.core.models import InferenceLog
from functions.store.mongo import Store
from functions.store.paging import Page


@dataclass(frozen=True)
class ModelUsage:
    model: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    average_latency_ms: float


@dataclass(frozen=True)
class Usage:
    start_time: int | None
    end_time: int | None
    data: list[ModelUsage]
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def usage(store: Store, client_code: str, start_time: int | None, end_time: int | None) -> Usage:
    """Totals per model for calls made at or after `start_time` and before `end_time` (Unix seconds)."""
    if start_time is not None and end_time is not None and end_time <= start_time:
        raise InvalidRequest("end_time must be after start_time", param="end_time")
    rows = [
        ModelUsage(
            model=r["model"],
            requests=r["requests"],
            errors=r["errors"],
            prompt_tokens=r["prompt_tokens"],
            completion_tokens=r["completion_tokens"],
            total_tokens=r["prompt_tokens"] + r["completion_tokens"],
            average_latency_ms=round(r["latency_ms_total"] / r["requests"], 3) if r["requests"] else 0.0,
        )
        for r in store.inference_logs.usage(client_code, start_time, end_time)
    ]
    prompt, completion = sum(r.prompt_tokens for r in rows), sum(r.completion_tokens for r in rows)
    return Usage(
        start_time=start_time,
        end_time=end_time,
        data=rows,
        requests=sum(r.requests for r in rows),
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
    )


def logs(store: Store, client_code: str, after: str | None, limit: int, model: str | None) -> Page[InferenceLog]:
    """The tenant's calls, newest first (optionally of one model)."""
    return store.inference_logs.page(client_code, after, limit, model)
