"""OpenAI fine-tuning jobs: `client.fine_tuning.jobs.*` (create, list, retrieve, cancel, events, checkpoints)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query

from functions.api.deps import CurrentTenant, QueuesDep, SettingsDep, StoreDep
from functions.api.schemas import OPENAI_ERRORS
from functions.api.schemas_jobs import CheckpointList, CheckpointOut, EventList, EventOut, JobCreate, JobList, JobOut
from functions.core.errors import InvalidRequest
from functions.core.models import Checkpoint, Job, JobEvent
from functions.jobs import service

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"], responses=OPENAI_ERRORS)
Limit = Annotated[int, Query(ge=1, le=100)]


@router.post("", response_model=JobOut)
def create_job(
    body: JobCreate,
    tenant: CurrentTenant,
    store: StoreDep,
    queues: QueuesDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobOut:
    asked = body.hyperparameters
    if body.method is not None:
        if body.method.type != "supervised":
            raise InvalidRequest(
                f"method.type {body.method.type!r} is not supported; use supervised", param="method.type"
            )
        if body.method.supervised is not None and body.method.supervised.hyperparameters:
            asked = {**(asked or {}), **body.method.supervised.hyperparameters}
    if body.integrations:
        raise InvalidRequest("integrations are not supported", param="integrations")
    job, _ = service.create_job(
        store,
        queues,
        settings,
        tenant,
        model=body.model,
        training_file=body.training_file,
        validation_file=body.validation_file,
        hyperparameters_asked=asked,
        suffix=body.suffix,
        seed=body.seed,
        metadata=body.metadata,
        idempotency_key=idempotency_key,
    )
    return JobOut.of(job)


@router.get("", response_model=JobList)
def list_jobs(tenant: CurrentTenant, store: StoreDep, after: str | None = None, limit: Limit = 20) -> JobList:
    page = store.jobs.page(tenant.client_code, after, limit)
    return JobList(data=[JobOut.of(Job.model_validate(d)) for d in page.items], has_more=page.has_more)


@router.get("/{fine_tuning_job_id}", response_model=JobOut)
def retrieve_job(fine_tuning_job_id: str, tenant: CurrentTenant, store: StoreDep) -> JobOut:
    return JobOut.of(service.get_job(store, tenant.client_code, fine_tuning_job_id))


@router.post("/{fine_tuning_job_id}/cancel", response_model=JobOut)
def cancel_job(fine_tuning_job_id: str, tenant: CurrentTenant, store: StoreDep, queues: QueuesDep) -> JobOut:
    return JobOut.of(service.cancel_job(store, queues, tenant.client_code, fine_tuning_job_id))


@router.get("/{fine_tuning_job_id}/events", response_model=EventList)
def list_events(
    fine_tuning_job_id: str, tenant: CurrentTenant, store: StoreDep, after: str | None = None, limit: Limit = 20
) -> EventList:
    job = service.get_job(store, tenant.client_code, fine_tuning_job_id)
    page = store.events.page(job.id, after, limit)
    return EventList(data=[EventOut.of(JobEvent.model_validate(d)) for d in page.items], has_more=page.has_more)


@router.get("/{fine_tuning_job_id}/checkpoints", response_model=CheckpointList)
def list_checkpoints(
    fine_tuning_job_id: str, tenant: CurrentTenant, store: StoreDep, after: str | None = None, limit: Limit = 10
) -> CheckpointList:
    job = service.get_job(store, tenant.client_code, fine_tuning_job_id)
    page = store.checkpoints.page(job.id, after, limit)
    data = [CheckpointOut.of(Checkpoint.model_validate(d)) for d in page.items]
    return CheckpointList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=page.has_more,
    )
