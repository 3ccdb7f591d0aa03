"""Seed 004's routes for classical models (profile `tabular`): predict with the active model, a type's active version
or an exact version; register, list and activate versions; the tenant's prediction log; delete model files.

Every route acts for the tenant in `X-Tenant-ID` (default "default"). Predictions: body `{"input_data": {...}}`,
validated against the version's feature schema (422 naming the feature). Seed 004's `api_key` may come in the body
or the query instead of the bearer header (middleware.py).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from ministudio_serve.deps import StateDep
from ministudio_serve.errors import ApiError
from ministudio_serve.routes import health
from ministudio_serve.tabular.deps import RequestIdDep, TabularDep, TabularRoute, TenantDep
from ministudio_serve.tabular.schema import NAME, RESERVED_VERSIONS
from ministudio_serve.tabular.versions import UploadMeta, VersionMeta

router = APIRouter(tags=["seed-004 classical models"], route_class=TabularRoute)
# The LLM probes report an engine this profile never loads: it keeps only /metrics from them.
metrics_router = APIRouter(routes=[r for r in health.router.routes if getattr(r, "path", "") == "/metrics"])

_LLM_ONLY_COLUMNS = frozenset({"adapter", "prompt_tokens", "completion_tokens", "finish_reason"})
ModelType = Annotated[str, Path(pattern=NAME.pattern, description="e.g. logistic_regression, xgboost")]
Version = Annotated[str, Path(pattern=NAME.pattern, description="e.g. v1; `latest` or `active` also resolve")]


class PredictBody(BaseModel):
    input_data: dict[str, Any] = Field(description="feature name -> value, as the version's schema lists them")
    api_key: str | None = Field(None, description="seed 004's token; the bearer header works too")


class ActivateBody(BaseModel):
    model_type: str = Field(pattern=NAME.pattern)
    version: str | None = Field(None, pattern=NAME.pattern, description="the type's active version when empty")


class TypeActivateBody(BaseModel):
    version: str = Field(pattern=NAME.pattern)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _predict(
    service: TabularDep,
    tenant: str,
    model_type: str | None,
    version: str | None,
    body: PredictBody,
    route: str,
    rid: str,
) -> dict[str, Any]:
    out = service.predict(tenant, model_type, version, body.input_data, route, rid)
    return {
        "model_type": out.meta.model_type,
        "version": out.meta.version,
        **out.body,
        "cached": out.cached,
        "latency_ms": out.latency_ms,
        "request_id": rid,
        "timestamp": _now(),
    }


@router.get("/")
def root() -> dict[str, Any]:
    return {"status": "ok", "service": "ministudio-serve", "profile": "tabular"}


@router.get("/health")
def health_check(service: TabularDep, state: StateDep) -> dict[str, Any]:
    return {
        "status": "healthy",
        "api_status": "running",
        "profile": "tabular",
        "store": service.versions.store.describe(),
        "cache": service.cache.status(),
        "timestamp": _now(),
        "uptime_seconds": round(time.time() - state.started_at, 3),
    }


@router.get("/ready")
def ready(service: TabularDep) -> JSONResponse:
    try:
        service.versions.store.list("tabular/.probe/")
    except Exception as exc:  # any store failure means not ready; say which
        return JSONResponse({"ready": False, "error": f"store: {type(exc).__name__}: {exc}"}, status_code=503)
    return JSONResponse({"ready": True})


@router.get("/ping")
def ping(service: TabularDep) -> JSONResponse:
    return JSONResponse({}, status_code=ready(service).status_code)


@router.post("/predict")
def predict_active(body: PredictBody, service: TabularDep, tenant: TenantDep, rid: RequestIdDep) -> dict[str, Any]:
    return _predict(service, tenant, None, None, body, "/predict", rid)


@router.post("/predict/{model_type}")
def predict_type(
    model_type: ModelType, body: PredictBody, service: TabularDep, tenant: TenantDep, rid: RequestIdDep
) -> dict[str, Any]:
    return _predict(service, tenant, model_type, None, body, "/predict/{model_type}", rid)


@router.post("/predict/{model_type}/{version}")
def predict_version(
    model_type: ModelType,
    version: Version,
    body: PredictBody,
    service: TabularDep,
    tenant: TenantDep,
    rid: RequestIdDep,
) -> dict[str, Any]:
    return _predict(service, tenant, model_type, version, body, "/predict/{model_type}/{version}", rid)


@router.get("/models")
def list_models(service: TabularDep, tenant: TenantDep) -> dict[str, Any]:
    known = service.versions
    types = [
        {
            "model_type": t,
            "active_version": known.active_version(tenant, t),
            "versions": [v.model_dump() for v in known.versions(tenant, t)],
        }
        for t in known.model_types(tenant)
    ]
    return {"tenant": tenant, "active": known.active_model(tenant), "models": types}


@router.get("/models/{model_type}")
def list_versions(model_type: ModelType, service: TabularDep, tenant: TenantDep) -> dict[str, Any]:
    versions = service.versions.versions(tenant, model_type)
    if not versions:
        service.versions.resolve(tenant, model_type)  # raises the 404 that names the known types
    active = service.versions.active_version(tenant, model_type)
    return {"model_type": model_type, "active_version": active, "versions": [v.model_dump() for v in versions]}


@router.get("/models/{model_type}/{version}")
def get_version(model_type: ModelType, version: Version, service: TabularDep, tenant: TenantDep) -> VersionMeta:
    return service.versions.resolve(tenant, model_type, version)


@router.post("/models/{model_type}/versions", status_code=201)
async def register_version(
    model_type: ModelType,
    service: TabularDep,
    tenant: TenantDep,
    file: Annotated[UploadFile, File(description="skops (scikit-learn) or XGBoost JSON/UBJSON; never a pickle")],
    metadata: Annotated[str, Form(description="JSON: features [{name, type}], target_names, metrics")] = "{}",
    version: Annotated[str | None, Form(pattern=NAME.pattern, description="default: the next v<N>")] = None,
    activate: Annotated[bool, Form(description="make it the type's active version and the active model")] = False,
) -> VersionMeta:
    if model_type in RESERVED_VERSIONS or (version or "") in RESERVED_VERSIONS:
        raise ApiError(400, f"{sorted(RESERVED_VERSIONS)} are reserved names", code="reserved_name")
    try:
        upload = UploadMeta.model_validate(json.loads(metadata))
    except (ValueError, ValidationError) as exc:
        raise ApiError(400, f"metadata: {exc}", code="invalid_metadata", param="metadata") from exc
    data = await file.read()
    return await run_in_threadpool(service.register, tenant, model_type, data, upload, version, activate)


@router.put("/models/active")
def set_active_model(body: ActivateBody, service: TabularDep, tenant: TenantDep) -> dict[str, Any]:
    return {"active": service.versions.set_active(tenant, body.model_type, body.version)}


@router.put("/models/{model_type}/active")
def set_type_version(
    model_type: ModelType, body: TypeActivateBody, service: TabularDep, tenant: TenantDep
) -> dict[str, Any]:
    pointer = service.versions.set_active(tenant, model_type, body.version, tenant_wide=False)
    return {"model_type": model_type, "active_version": pointer["version"]}


@router.get("/logs")
def logs(service: TabularDep, tenant: TenantDep, n_limit: Annotated[int, Query(ge=1, le=1000)] = 10) -> dict[str, Any]:
    entries = [_log_entry(e) for e in service.request_log.recent(n_limit, tenant=tenant)]
    return {"logs": entries, "count": len(entries)}


def _log_entry(row: dict[str, Any]) -> dict[str, Any]:
    entry = {k: v for k, v in row.items() if k not in _LLM_ONLY_COLUMNS}
    for name in ("input_data", "output"):
        entry[name] = json.loads(entry[name]) if entry.get(name) else None
    return entry


@router.delete("/delete-models")
def delete_models(service: TabularDep, tenant: TenantDep) -> dict[str, Any]:
    """Seed 004: "Deletes all model files except metadata" (the tenant's)."""
    return {"deleted": True, "tenant": tenant, **service.delete_model_files(tenant)}
