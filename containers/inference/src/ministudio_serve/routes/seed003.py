"""Seed 003's multi-model routes: GET /models, POST /infer and /infer/batch (services/task_registry.py)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ministudio_serve.deps import RequestIdDep, StateDep, TasksDep
from ministudio_serve.schemas.seed import InferBatchRequest, InferRequest, InferResponse

router = APIRouter(tags=["seed-003"])


@router.get("/models")
async def models(tasks: TasksDep, state: StateDep) -> dict[str, Any]:
    entries = tasks.listing()
    for name in state.adapters.names() if state.adapters else []:
        entries.append(
            {"name": name, "version": "v1", "versions": ["v1"], "latest": True, "model_type": "adapter", "loaded": True}
            | {"backing_model": state.settings.model_name, "default": False}
        )
    return {"models": entries, "default_model": state.settings.default_task_model}


class VersionRequest(BaseModel):
    version: str = Field(description="v2, v3, ...")
    path: str = Field(min_length=1, description="a folder on the server holding the model (or a hub id)")


@router.post("/models/{name}/versions", status_code=201)
async def register_version(name: str, body: VersionRequest, tasks: TasksDep) -> dict[str, Any]:
    """Seed 003's model versioning: another version of a task model from a folder; the newest answers by default."""
    model = tasks.register(name, body.version, body.path)
    return next(m for m in tasks.listing() if m["name"] == name and m["version"] == model.version)


@router.post("/infer", response_model=InferResponse)
async def infer(body: InferRequest, tasks: TasksDep, rid: RequestIdDep) -> dict[str, Any]:
    return await tasks.infer(body, rid, "/infer")


@router.post("/infer/batch")
async def infer_batch(body: InferBatchRequest, tasks: TasksDep, rid: RequestIdDep) -> dict[str, Any]:
    started = time.perf_counter()
    results = await tasks.infer_batch(body.requests, rid)
    return {
        "success": all(r["success"] for r in results),
        "results": results,
        "batch_size": len(results),
        "total_latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "request_id": rid,
    }
