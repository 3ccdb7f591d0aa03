"""Seed 003's multi-model routes: GET /models, POST /infer and /infer/batch. The LLM is model `generator` v1;
adapters answer under their own names."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from ministudio_serve.deps import GenerationDep, RequestIdDep, StateDep
from ministudio_serve.errors import ApiError
from ministudio_serve.schemas.seed import InferBatchRequest, InferRequest, InferResponse
from ministudio_serve.services.generation import GenerationService
from ministudio_serve.state import ServerState

router = APIRouter(tags=["seed-003"])
GENERATOR = "generator"
VERSION = "v1"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _model_for(state: ServerState, item: InferRequest) -> str:
    if item.model == GENERATOR:
        if item.version != VERSION:
            raise ApiError(
                404, f"model {GENERATOR} has no version {item.version!r} (available: {VERSION})", code="model_not_found"
            )
        return state.settings.model_name
    return item.model  # an adapter name or the base model's id; unknown names become 404 when resolved


async def _infer(
    service: GenerationService, state: ServerState, item: InferRequest, rid: str, route: str
) -> InferResponse:
    started = time.perf_counter()
    p = item.parameters
    try:
        options: dict[str, Any] = {
            "max_tokens": int(p.get("max_length", p.get("max_tokens", 50))),
            "temperature": float(p.get("temperature", 0.7)),
            "top_p": float(p.get("top_p", 0.95)),
            "seed": int(p["seed"]) if p.get("seed") is not None else None,
            "stop": tuple(p.get("stop") or ()),
        }
    except (TypeError, ValueError) as exc:
        raise ApiError(400, f"parameters: {exc}", param="parameters") from exc
    if not 1 <= options["max_tokens"] <= 2048 or not 0 <= options["temperature"] <= 2 or not 0 < options["top_p"] <= 1:
        raise ApiError(400, "parameters: max_length 1-2048, temperature 0-2, top_p in (0, 1]", param="parameters")
    result = await service.generate_text(_model_for(state, item), item.text, route, rid, **options)
    return InferResponse(
        success=True,
        result=result.text,
        model_used=f"{item.model}:{item.version}",
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        request_id=rid,
        timestamp=_now(),
        metadata={
            "model_type": GENERATOR if item.model == GENERATOR else "adapter",
            "finish_reason": result.finish_reason,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
        },
    )


@router.get("/models")
async def models(state: StateDep) -> dict[str, Any]:
    entries = [
        {
            "name": GENERATOR,
            "versions": [VERSION],
            "model_type": GENERATOR,
            "loaded": state.ready,
            "backing_model": state.settings.model_name,
        }
    ]
    for name in state.adapters.names() if state.adapters else []:
        entries.append(
            {
                "name": name,
                "versions": [VERSION],
                "model_type": "adapter",
                "loaded": True,
                "backing_model": state.settings.model_name,
            }
        )
    return {"models": entries, "default_model": GENERATOR}


@router.post("/infer", response_model=InferResponse)
async def infer(body: InferRequest, service: GenerationDep, state: StateDep, rid: RequestIdDep) -> InferResponse:
    return await _infer(service, state, body, rid, "/infer")


@router.post("/infer/batch")
async def infer_batch(
    body: InferBatchRequest, service: GenerationDep, state: StateDep, rid: RequestIdDep
) -> dict[str, Any]:
    started = time.perf_counter()

    async def one(i: int, item: InferRequest) -> dict[str, Any]:
        try:
            return (await _infer(service, state, item, f"{rid}-{i}", "/infer/batch")).model_dump()
        except ApiError as exc:  # one bad item must not sink the others: it reports its own failure
            return {
                "success": False,
                "result": None,
                "model_used": f"{item.model}:{item.version}",
                "error": exc.message,
                "request_id": f"{rid}-{i}",
                "timestamp": _now(),
            }

    results = await asyncio.gather(*(one(i, item) for i, item in enumerate(body.requests)))
    return {
        "success": all(r["success"] for r in results),
        "results": results,
        "batch_size": len(results),
        "total_latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "request_id": rid,
    }
