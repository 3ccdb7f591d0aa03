"""The dispatch worker's logic: job → compute backend, idempotent by the run name derived from the job id.

Each step is a conditional write, and the backend's submit is idempotent by run name, so a message delivered twice,
or redelivered after a crash between any two writes, still ends in exactly one run.
"""

from __future__ import annotations

import json
from typing import Any

from functions.compute.base import RunState, TrainingBackend, TrainingSpec, run_name
from functions.core import names
from functions.core.models import Job, JobStatus, now
from functions.core.observability import log
from functions.core.settings import Settings
from functions.jobs.service import add_event, status_event
from functions.store.mongo import Store


def parse(body: str) -> tuple[str, str]:
    message = json.loads(body)
    if not isinstance(message, dict) or not isinstance(message.get("job_id"), str):
        raise ValueError("dispatch message must be a JSON object with a string job_id")
    action = message.get("action", "start")
    if action not in ("start", "cancel"):
        raise ValueError(f"unknown dispatch action {action!r}")
    return message["job_id"], action


def handle(store: Store, backend: TrainingBackend, settings: Settings, body: str) -> None:
    job_id, action = parse(body)
    job = store.jobs.get(job_id)
    if job is None:
        log("warning", "dispatch: no such job; message dropped", job_id=job_id)
        return
    if action == "cancel":
        stop(store, backend, job)
    else:
        start(store, backend, settings, job)


def spec_for(store: Store, settings: Settings, job: Job) -> TrainingSpec:
    def uri(file_id: str | None) -> str | None:
        if file_id is None:
            return None
        dataset = store.datasets.get(file_id, job.client_code)
        if dataset is None:
            raise LookupError(f"file {file_id} of job {job.id} is gone")
        return f"s3://{dataset.bucket}/{dataset.s3_key}"

    training = uri(job.training_file)
    assert training is not None
    return TrainingSpec(
        job_id=job.id,
        tenant=job.client_code,
        model=job.model,
        training_file=training,
        validation_file=uri(job.validation_file),
        output=f"s3://{settings.artifacts_bucket}/{names.ARTIFACTS_PREFIX}{job.client_code}/{job.id}/",
        hyperparameters=job.resolved_hyperparameters,
        seed=job.seed,
        suffix=job.suffix,
        compute=job.compute,
    )


def start(store: Store, backend: TrainingBackend, settings: Settings, job: Job) -> None:
    if job.status == JobStatus.queued:
        moved = store.jobs.transition(job.id, [JobStatus.queued], JobStatus.dispatching)
        job = moved or store.jobs.get(job.id) or job
    if job.status != JobStatus.dispatching:
        status_event(store, job)  # a redelivery after the last write: make sure its event exists
        return
    name = run_name(job.id)
    try:
        spec = spec_for(store, settings, job)
    except LookupError as exc:
        fail(store, job, "training_file_missing", str(exc))
        return
    run = backend.submit(name, spec)
    if run.state is RunState.pending:  # waiting for a slot (the local backend runs a few at a time): still queued
        store.jobs.update(job.id, [JobStatus.dispatching], run_name=name, backend=backend.name)
        add_event(store, job, "waiting-for-slot", "Waiting for a free training slot: another job is running")
        return
    mark_running(store, settings, job, name, backend.name)
    log("info", "dispatch: job submitted", job_id=job.id, run=name, state=run.state.value)
    current = store.jobs.get(job.id)
    if current is not None and current.status == JobStatus.cancelling:
        # Cancelled while we were submitting: the run we just started must not live on.
        store.jobs.update(job.id, [JobStatus.cancelling], run_name=name, backend=backend.name)
        stop(store, backend, current)


def mark_running(store: Store, settings: Settings, job: Job, name: str, backend_name: str) -> Job | None:
    """`dispatching` → `running` once the run has really started (at submit, or at its first progress)."""
    started = now()
    running = store.jobs.transition(
        job.id,
        [JobStatus.dispatching],
        JobStatus.running,
        run_name=name,
        backend=backend_name,
        started_at=started,
        deadline_at=started + settings.job_max_runtime_seconds,
    )
    if running is not None:
        status_event(store, running)
    return running


def stop(store: Store, backend: TrainingBackend, job: Job) -> None:
    if job.status != JobStatus.cancelling:
        return
    if job.run_name is None:
        done = store.jobs.transition(job.id, [JobStatus.cancelling], JobStatus.cancelled, finished_at=now())
        if done:
            status_event(store, done)
        return
    state = backend.cancel(job.run_name).state
    # The trainer writes result.json (cancelled) on SIGTERM; a run that is already gone is settled here.
    if state in (RunState.cancelled, RunState.missing) or state.terminal:
        done = store.jobs.transition(job.id, [JobStatus.cancelling], JobStatus.cancelled, finished_at=now())
        if done:
            status_event(store, done)


def fail(store: Store, job: Job, code: str, message: str, param: str | None = None) -> Job | None:
    error: dict[str, Any] = {"code": code, "message": message, "param": param}
    active = [JobStatus.queued, JobStatus.dispatching, JobStatus.running, JobStatus.cancelling]
    failed = store.jobs.transition(job.id, active, JobStatus.failed, error=error, finished_at=now())
    if failed:
        status_event(store, failed)
    return failed
