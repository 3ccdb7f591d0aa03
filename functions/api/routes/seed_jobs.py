"""Seed 001's fine-tuning routes: same paths, bodies and `{"ok": ...}` envelopes."""

from __future__ import annotations

from fastapi import APIRouter

from functions.api.deps import CallerDep
from functions.api.schemas import SEED_ERRORS
from functions.api.schemas_jobs import SeedClusterStatus, SeedJob, SeedJobRequest, SeedJobs, seed_job
from functions.jobs import seed, service

router = APIRouter(prefix="/fine_tuning", tags=["fine_tuning"], responses=SEED_ERRORS)


@router.post("/submit-finetune", status_code=201)
def submit_finetune(body: SeedJobRequest, caller: CallerDep) -> SeedJob:
    caller.own(body.client_code)
    asked = body.model_dump(include={"n_epochs", "batch_size", "prompt_loss_weight", "learning_rate_multiplier"})
    job = seed.submit(
        caller.store,
        caller.blobs,
        caller.queues,
        caller.settings,
        caller.tenant,
        body.model,
        body.dataset_filename,
        asked,
    )
    return SeedJob(job=seed_job(job, body.dataset_filename))


@router.get("/jobs/client/{client_code}")
def client_jobs(client_code: str, caller: CallerDep) -> SeedJobs:
    return SeedJobs(jobs=[seed_job(j, j.dataset_ref) for j in seed.jobs_of(caller.store, caller.own(client_code))])


@router.get("/jobs/{job_id}")
def job_status(job_id: str, caller: CallerDep) -> SeedJob:
    job = service.get_job(caller.store, caller.client_code, job_id)
    return SeedJob(job=seed_job(job, job.dataset_ref))


@router.get("/cluster-status")
def cluster_status(caller: CallerDep) -> SeedClusterStatus:
    """Capacity and run counts for everyone; run ids only of the caller's own jobs."""
    return SeedClusterStatus(status=seed.cluster_status(caller.store, caller.training, caller.client_code))
