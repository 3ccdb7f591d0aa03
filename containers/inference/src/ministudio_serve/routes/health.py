"""Probes and server facts: /health (liveness, seed 002's body), /ready and /ping (readiness), /metrics, /info,
/status and `/` (seed 004's root)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ministudio_serve.deps import StateDep
from ministudio_serve.devices import visible_cuda_devices
from ministudio_serve.state import ServerState

router = APIRouter(tags=["health"])


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _model_status(state: ServerState) -> str:
    return "loaded" if state.ready else ("failed" if state.load_error else "loading")


@router.get("/health")
async def health(state: StateDep) -> JSONResponse:
    # Liveness: answers while the model loads; only a failed load is unhealthy (a restart may fix a lost download).
    gpu = "available" if state.engine is not None and state.engine.device.startswith("cuda") else "unavailable"
    body = {
        "status": "unhealthy" if state.load_error else "healthy",
        "api_status": "running",
        "model_status": _model_status(state),
        "gpu_status": gpu,
        "timestamp": _now(),
        "uptime_seconds": round(time.time() - state.started_at, 3),
    }
    return JSONResponse(body, status_code=503 if state.load_error else 200)


@router.get("/ready")
async def ready(state: StateDep) -> JSONResponse:
    body = {"ready": state.ready, "model_status": _model_status(state)}
    if state.load_error:
        body["error"] = state.load_error
    return JSONResponse(body, status_code=200 if state.ready else 503)


@router.get("/ping")
async def ping(state: StateDep) -> Response:
    """SageMaker's health check: 200 once the container can serve /invocations."""
    return Response(status_code=200 if state.ready else 503)


@router.get("/metrics")
async def metrics(state: StateDep) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/info")
async def info(state: StateDep) -> dict[str, Any]:
    s = state.settings
    engine = state.engine
    return {
        "model_name": s.model_name,
        "model_version": s.model_version,
        "model_source": s.model,
        "model_status": _model_status(state),
        "engine": s.engine,
        "device": engine.device if engine else None,
        # CUDA_VISIBLE_DEVICES's devices, [{index, id, name}] (`cuda:index` is `id`); null without CUDA.
        "cuda_devices": visible_cuda_devices(),
        "context_length": state.generation.context_length if state.generation else None,
        "max_batch_size": s.max_batch_size,
        "batch_timeout_ms": s.batch_timeout_ms,
        "max_loras": s.max_loras,
        "adapters": state.adapters.names() if state.adapters else [],
        "load_seconds": state.load_seconds,
        "profile": s.profile,
        # Seed 002's "model metadata from MLflow": name, version, stage, aliases, run id and its metrics.
        "registry": state.registered.info() if state.registered else None,
    }


@router.get("/status")
async def status(state: StateDep) -> dict[str, Any]:
    stats = state.engine.stats() if state.engine else None
    return {
        "status": "running",
        "model_loaded": state.ready,
        "model_status": _model_status(state),
        "requests_running": stats.running if stats else 0,
        "requests_waiting": stats.waiting if stats else 0,
        "uptime_seconds": round(time.time() - state.started_at, 3),
        "timestamp": _now(),
    }


@router.get("/")
async def root(state: StateDep) -> dict[str, Any]:
    return {"status": "ok", "service": "ministudio-serve", "model": state.settings.model_name}
