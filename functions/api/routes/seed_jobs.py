"""Seed 001's fine-tuning routes: same paths, bodies and `{"ok": ...}` envelopes."""

from __future__ import annotations

from fastapi import APIRouter

from functions.api.deps import BackendDep, BlobsDep, CurrentTenant, QueuesDep, SettingsDep, StoreDep, own_client_code
from functions.api.schemas import SEED_ERRORS
from functions.api.schemas_jobs import SeedClusterStatus, SeedJob, SeedJobRequest, SeedJobs, seed_job
from functions.datasets.registry import resolve_reference
from functions.jobs import cluster, service

router = APIRouter(prefix="/fine_tuning", tags=["fine_tuning"], responses=SEED_ERRORS)


@router.post("/submit-finetune", status_code=201, response_model=SeedJob)
def submit_finetune(
    body: SeedJobRequest,
    tenant: CurrentTenant,
    store: StoreDep,
    blobs: BlobsDep,
    queues: QueuesDep,
    settings: SettingsDep,
) -> SeedJob:
    own_client_code(tenant, body.client_code)
    dataset = resolve_reference(store, blobs, settings, tenant.client_code, body.dataset_filename)
    asked = {
        k: v
        for k, v in {
            "n_epochs": body.n_epochs,
            "batch_size": body.batch_size,
            "prompt_loss_weight": body.prompt_loss_weight,
            "learning_rate_multiplier": body.learning_rate_multiplier,
        }.items()
        if v is not None
    }
    job, _ = service.create_job(
        store,
        queues,
        settings,
        tenant,
        model=body.model,
        training_file=dataset.id,
        hyperparameters_asked=asked,
        source="seed",
        dataset_ref=body.dataset_filename,
    )
    return SeedJob(job=seed_job(job, body.dataset_filename))


@router.get("/jobs/client/{client_code}", response_model=SeedJobs)
def client_jobs(client_code: str, tenant: CurrentTenant, store: StoreDep) -> SeedJobs:
    code = own_client_code(tenant, client_code)
    return SeedJobs(jobs=[seed_job(j, j.dataset_ref) for j in store.jobs.all_for(code)])


@router.get("/jobs/{job_id}", response_model=SeedJob)
def job_status(job_id: str, tenant: CurrentTenant, store: StoreDep) -> SeedJob:
    job = service.get_job(store, tenant.client_code, job_id)
    return SeedJob(job=seed_job(job, job.dataset_ref))


@router.get("/cluster-status", response_model=SeedClusterStatus)
def cluster_status(tenant: CurrentTenant, backend: BackendDep, store: StoreDep) -> SeedClusterStatus:
    """Capacity and run counts for everyone; run ids only of the caller's own jobs."""
    status = {"backend": backend.name, **backend.cluster_status()}
    return SeedClusterStatus(status=cluster.tenant_view(store, tenant.client_code, status))
