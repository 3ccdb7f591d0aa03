"""Seed 001's fine-tuning routes: submit a job naming its dataset by id, S3 key or DFS path; a tenant's jobs;
the training backend's status as a tenant may see it."""

from __future__ import annotations

import logging
from typing import Any

from functions.compute.base import TrainingBackend
from functions.core.models import Job, Tenant
from functions.core.settings import Settings
from functions.datasets.intake import resolve_reference
from functions.jobs import cluster
from functions.jobs.service import create_job
from functions.store.blobs import Blobs
from functions.store.mongo import Store
from functions.store.queues import Queues

log = logging.getLogger(__name__)


def submit(
    store: Store,
    blobs: Blobs,
    queues: Queues,
    settings: Settings,
    tenant: Tenant,
    model: str,
    dataset_ref: str,
    hyperparameters_asked: dict[str, Any],
) -> Job:
    """Seed 001's submit-finetune: the dataset is named by id, S3 key or DFS path; unset hyperparameters are auto."""
    dataset = resolve_reference(store, blobs, settings, tenant.client_code, dataset_ref)
    job, _ = create_job(
        store,
        queues,
        settings,
        tenant,
        model=model,
        training_file=dataset.id,
        hyperparameters_asked={k: v for k, v in hyperparameters_asked.items() if v is not None},
        source="seed",
        dataset_ref=dataset_ref,
    )
    return job


def jobs_of(store: Store, client_code: str) -> list[Job]:
    """Every job of the tenant, newest first (seed 001's unpaginated list)."""
    return store.jobs.all_for(client_code)


def cluster_status(store: Store, backend: TrainingBackend, client_code: str) -> dict[str, Any]:
    """Capacity and run counts for everyone; run ids only of the caller's own jobs. A backend that cannot answer
    gives seed 001's stub with the reason (`available: false`), never a 500."""
    try:
        status = backend.cluster_status()
    except Exception as exc:  # any backend: its cluster is unreachable or refused; the reason is for the operator
        log.warning("cluster status from the %s backend failed: %s", backend.name, exc)
        status = {"available": False, "reason": str(exc) or type(exc).__name__, "runs": {"running": [], "queued": []}}
    return cluster.tenant_view(store, client_code, {"backend": backend.name, **status})
