"""Seed 004's routes, LLM variant: POST /predict/{model}/{version} (model = served name or adapter; ids may hold
'/') and GET /logs?n_limit= from the server's own SQLite request log."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from ministudio_serve.deps import GenerationDep, RequestIdDep, StateDep
from ministudio_serve.errors import ApiError
from ministudio_serve.schemas.seed import PredictRequest

router = APIRouter(tags=["seed-004"])


@router.post("/predict/{model:path}/{version}")
async def predict_version(
    model: str, version: str, body: PredictRequest, service: GenerationDep, state: StateDep, rid: RequestIdDep
) -> dict[str, Any]:
    served = state.settings.model_version
    if version not in (served, f"v{served}", "latest"):
        raise ApiError(
            404, f"model {model!r} has no version {version!r} (available: {served}, latest)", code="model_not_found"
        )
    data = body.input_data
    prompt = data.get("messages") or data.get("prompt")
    if not prompt or not isinstance(prompt, str | list):
        raise ApiError(400, "input_data needs `prompt` (text) or `messages` (chat)", param="input_data")
    try:
        options: dict[str, Any] = {
            "max_tokens": int(data.get("max_tokens", data.get("max_length", 100))),
            "temperature": float(data.get("temperature", 0.7)),
            "top_p": float(data.get("top_p", 0.95)),
            "stop": tuple(data.get("stop") or ()),
            "seed": int(data["seed"]) if data.get("seed") is not None else None,
        }
        messages = (
            [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
            if isinstance(prompt, list)
            else prompt
        )
    except (TypeError, ValueError, KeyError) as exc:
        raise ApiError(400, f"input_data: {exc!r}", param="input_data") from exc
    if not 1 <= options["max_tokens"] <= 4096 or not 0 <= options["temperature"] <= 2 or not 0 < options["top_p"] <= 1:
        raise ApiError(400, "input_data: max_tokens 1-4096, temperature 0-2, top_p in (0, 1]", param="input_data")
    started = time.perf_counter()
    result = await service.generate_text(model, messages, "/predict/{model}/{version}", rid, **options)
    return {
        "model": model,
        "version": version,
        "prediction": result.text,
        "finish_reason": result.finish_reason,
        "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens},
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "request_id": rid,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }


@router.get("/logs")
async def logs(state: StateDep, n_limit: Annotated[int, Query(ge=1, le=1000)] = 10) -> dict[str, Any]:
    entries = state.request_log.recent(n_limit)
    return {"logs": entries, "count": len(entries)}
