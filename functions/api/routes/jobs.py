"""OpenAI fine-tuning jobs: `client.fine_tuning.jobs.*` (create, list, retrieve, cancel, events, checkpoints)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query

from functions.api.deps import CallerDep
from functions.api.schemas import OPENAI_ERRORS, ListPage
from functions.api.schemas_jobs import CheckpointOut, EventOut, JobCreate, JobOut
from functions.jobs import compute, service

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"], responses=OPENAI_ERRORS)
Limit = Annotated[int, Query(ge=1, le=100)]


@router.post("")
def create_job(
    body: JobCreate, caller: CallerDep, idempotency_key: Annotated[str | None, Header(max_length=255)] = None
) -> JobOut:
    method, supervised = body.method, body.method.supervised if body.method else None
    resources = compute.resolve(body.model, body.compute)
    compute.check_capacity(caller.training, resources)
    job, _ = service.create_job(
        caller.store,
        caller.queues,
        caller.settings,
        caller.tenant,
        model=body.model,
        training_file=body.training_file,
        validation_file=body.validation_file,
        hyperparameters_asked=body.hyperparameters,
        suffix=body.suffix,
        seed=body.seed,
        metadata=body.metadata,
        idempotency_key=idempotency_key,
        method=method.type if method else None,
        method_hyperparameters=supervised.hyperparameters if supervised else None,
        integrations=body.integrations,
        compute=resources,
    )
    return JobOut.of(job)


@router.get("")
def list_jobs(caller: CallerDep, after: str | None = None, limit: Limit = 20) -> ListPage[JobOut]:
    return ListPage[JobOut].from_page(service.list_jobs(caller.store, caller.client_code, after, limit), JobOut.of)


@router.get("/{fine_tuning_job_id}")
def retrieve_job(fine_tuning_job_id: str, caller: CallerDep) -> JobOut:
    return JobOut.of(service.get_job(caller.store, caller.client_code, fine_tuning_job_id))


@router.post("/{fine_tuning_job_id}/cancel")
def cancel_job(fine_tuning_job_id: str, caller: CallerDep) -> JobOut:
    return JobOut.of(service.cancel_job(caller.store, caller.queues, caller.client_code, fine_tuning_job_id))


@router.get("/{fine_tuning_job_id}/events")
def list_events(
    fine_tuning_job_id: str, caller: CallerDep, after: str | None = None, limit: Limit = 20
) -> ListPage[EventOut]:
    return ListPage[EventOut].from_page(
        service.list_events(caller.store, caller.client_code, fine_tuning_job_id, after, limit), EventOut.of
    )


@router.get("/{fine_tuning_job_id}/checkpoints")
def list_checkpoints(
    fine_tuning_job_id: str, caller: CallerDep, after: str | None = None, limit: Limit = 10
) -> ListPage[CheckpointOut]:
    return ListPage[CheckpointOut].from_page(
        service.list_checkpoints(caller.store, caller.client_code, fine_tuning_job_id, after, limit), CheckpointOut.of
    )
