"""`/` and `/health`: open to everyone (load balancers, uptime checks)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from functions.api.deps import ClientsDep
from functions.api.schemas import Health, Welcome
from functions.store import health as stores

router = APIRouter(tags=["health"])


@router.get("/")
def welcome() -> Welcome:
    return Welcome(message="Welcome to Mini Studio: fine-tune and serve open-weight LLMs", docs="/docs")


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(clients: ClientsDep) -> JSONResponse:
    checked = stores.check(clients.store, clients.cache)
    body = Health.model_validate(asdict(checked))
    return JSONResponse(body.model_dump(), status_code=200 if checked.ok else 503)
