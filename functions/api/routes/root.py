"""`/` and `/health`: open to everyone (load balancers, uptime checks)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from functions.api.deps import CacheDep, StoreDep
from functions.api.schemas import Health, Welcome

router = APIRouter(tags=["health"])


@router.get("/", response_model=Welcome)
def welcome() -> Welcome:
    return Welcome(message="Welcome to Mini Studio: fine-tune and serve open-weight LLMs", docs="/docs")


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(store: StoreDep, cache: CacheDep) -> JSONResponse:
    mongo_ok = store.ping()
    redis_state = "ok" if cache.available() else ("unavailable" if cache.url else "disabled")
    status = "unhealthy" if not mongo_ok else ("degraded" if redis_state == "unavailable" else "healthy")
    body = Health(
        ok=mongo_ok, status=status, components={"mongodb": "ok" if mongo_ok else "unavailable", "redis": redis_state}
    )
    return JSONResponse(body.model_dump(), status_code=200 if mongo_ok else 503)
