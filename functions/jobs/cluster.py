"""What `/fine_tuning/cluster-status` may tell a tenant: the backend's capacity and how many runs are running or
queued, and which of them are the caller's own jobs. Backends list every run by name (local run dirs, Ray
submissions, RayJobs, SageMaker training jobs); those names are job ids, so other tenants' never leave here."""

from __future__ import annotations

from typing import Any

from functions.compute.base import run_name
from functions.store.mongo import Store

_LISTED = ("running", "queued")


def tenant_view(store: Store, client_code: str, status: dict[str, Any]) -> dict[str, Any]:
    runs = status.get("runs")
    if not isinstance(runs, dict):
        return status
    counts = {key: value for key, value in runs.items() if key not in _LISTED}
    own: dict[str, list[str]] = {}
    for key in _LISTED:
        names = [str(name) for name in runs.get(key) or []]
        counts[key] = len(names)
        own[key] = [job_id for name in names if (job_id := _own_job(store, client_code, name)) is not None]
    return {**status, "runs": {**counts, "own": own}}


def _own_job(store: Store, client_code: str, name: str) -> str | None:
    job = store.jobs.get(name, client_code)  # a run name is its job's id (ftjob-… is already DNS-1123)
    return job.id if job is not None and run_name(job.id) == name else None
