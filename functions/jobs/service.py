"""Creating, listing and cancelling fine-tuning jobs (logic only: no FastAPI, no boto3 shapes)."""

from __future__ import annotations

import re
from typing import Any

from ministudio_common.spec import Compute

from functions.core import catalogue, ids
from functions.core.errors import InvalidRequest
from functions.core.models import Checkpoint, Dataset, DatasetStatus, Job, JobEvent, JobStatus, Tenant, now
from functions.core.observability import log
from functions.core.settings import Settings
from functions.jobs import hyperparameters
from functions.jobs.idempotency import replay, request_fingerprint
from functions.store.mongo import Store
from functions.store.paging import Page
from functions.store.queues import Queues

SUFFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,18}$")
TERMINAL = [s.value for s in JobStatus if s.terminal]


def fine_tuned_name(base: str, client_code: str, suffix: str | None, job_id: str) -> str:
    return f"ft:{base}:{client_code}:{suffix or ''}:{job_id}"


def add_event(
    store: Store, job: Job, key: str, message: str, level: str = "info", data: dict[str, Any] | None = None
) -> None:
    """Events have ids derived from what happened (`key`), so a retried step never adds a second one."""
    event_type = "metrics" if key.startswith("metrics:") else "message"
    store.events.add(
        JobEvent(
            id=ids.derived_id("ftevent-", job.id, key),
            job_id=job.id,
            client_code=job.client_code,
            level=level,
            message=message,
            type=event_type,
            data=data or {},
        )
    )


def status_event(store: Store, job: Job) -> None:
    """The event announcing the job's current status; safe to call again for the same status."""
    messages = {
        JobStatus.validating_files: ("info", "Validating training file"),
        JobStatus.queued: ("info", "Fine-tuning job queued"),
        JobStatus.running: ("info", "Fine-tuning job started"),
        JobStatus.cancelling: ("info", "Cancelling fine-tuning job"),
        JobStatus.succeeded: ("info", "The job has successfully completed"),
        JobStatus.failed: ("error", "The job failed" + (f": {job.error['message']}" if job.error else "")),
        JobStatus.cancelled: ("info", "Fine-tuning job cancelled"),
    }
    if job.status in messages:
        level, message = messages[job.status]
        add_event(store, job, f"status:{job.status.value}", message, level)


def _dataset(store: Store, client_code: str, file_id: str | None, param: str) -> Dataset | None:
    if file_id is None:
        return None
    dataset = store.datasets.get(file_id, client_code)
    if dataset is None:
        raise InvalidRequest(f"{param} {file_id!r} does not name one of your files", param=param)
    if dataset.purpose != "fine-tune":
        raise InvalidRequest(f"{param} {file_id!r} is a {dataset.purpose} file, not training data", param=param)
    if dataset.status == DatasetStatus.invalid:
        errors = (dataset.validation or {}).get("errors") or [{"reason": "unknown"}]
        raise InvalidRequest(f"{param} {file_id!r} failed validation: {errors[0]['reason']}", param=param)
    return dataset


def _check_metadata(metadata: dict[str, str] | None) -> None:
    if metadata is None:
        return
    if len(metadata) > 16:
        raise InvalidRequest("metadata may hold at most 16 keys", param="metadata")
    for key, value in metadata.items():
        if len(key) > 64 or len(value) > 512:
            raise InvalidRequest("metadata keys are at most 64 characters, values 512", param=f"metadata.{key}")


def create_job(
    store: Store,
    queues: Queues,
    settings: Settings,
    tenant: Tenant,
    *,
    model: str,
    training_file: str,
    validation_file: str | None = None,
    hyperparameters_asked: dict[str, Any] | None = None,
    suffix: str | None = None,
    seed: int | None = None,
    metadata: dict[str, str] | None = None,
    idempotency_key: str | None = None,
    source: str = "api",
    dataset_ref: str | None = None,
    method: str | None = None,
    method_hyperparameters: dict[str, Any] | None = None,
    integrations: list[dict[str, Any]] | None = None,
    compute: Compute | None = None,
) -> tuple[Job, bool]:
    """Validate the request, write the job, then ask for dispatch; returns (job, created).

    OpenAI's `method` may carry the hyperparameters too (they win over the top-level ones); only `supervised`
    is trained here, and no integrations are."""
    if method is not None and method != "supervised":
        raise InvalidRequest(f"method.type {method!r} is not supported; use supervised", param="method.type")
    if method_hyperparameters:
        hyperparameters_asked = {**(hyperparameters_asked or {}), **method_hyperparameters}
    if integrations:
        raise InvalidRequest("integrations are not supported", param="integrations")
    asked = hyperparameters.check(hyperparameters_asked)
    fingerprint = request_fingerprint(
        model=model,
        training_file=training_file,
        validation_file=validation_file,
        hyperparameters=asked,
        suffix=suffix,
        seed=seed,
        metadata=metadata,
        **({"compute": compute.model_dump()} if compute is not None else {}),
    )
    # Before the other checks: a repeated request gets its job back even if, say, its file is gone since.
    if idempotency_key is not None and (again := replay(store, tenant.client_code, idempotency_key, fingerprint)):
        return again, False
    if model not in settings.base_models:
        raise InvalidRequest(
            f"model {model!r} cannot be fine-tuned here; available: {settings.base_models}", param="model"
        )
    if suffix is not None and not SUFFIX_RE.fullmatch(suffix):
        raise InvalidRequest("suffix must be 1-18 characters of letters, digits, '-' and '_'", param="suffix")
    if seed is not None and not 0 <= seed <= 2**31 - 1:
        raise InvalidRequest("seed must be between 0 and 2147483647", param="seed")
    _check_metadata(metadata)
    train = _dataset(store, tenant.client_code, training_file, "training_file")
    assert train is not None
    _dataset(store, tenant.client_code, validation_file, "validation_file")
    ready = train.status == DatasetStatus.validated
    job = Job(
        id=ids.new_id("ftjob-"),
        client_code=tenant.client_code,
        model=model,
        training_file=training_file,
        validation_file=validation_file,
        hyperparameters=asked,
        resolved_hyperparameters=hyperparameters.resolve(asked, _examples(train)) if ready else {},
        suffix=suffix,
        seed=seed if seed is not None else ids.seed_from(training_file),
        metadata=metadata,
        status=JobStatus.queued if ready else JobStatus.validating_files,
        backend=settings.compute_backend,
        idempotency_key=idempotency_key,
        source=source,
        dataset_ref=dataset_ref,
        compute=(compute or catalogue.default_compute(model)).model_dump(),
    )
    job, created = store.jobs.create(job, fingerprint)
    if not created:  # a concurrent request with the same key won the insert
        assert idempotency_key is not None
        return replay(store, tenant.client_code, idempotency_key, fingerprint) or job, False
    add_event(store, job, "created", "Created fine-tuning job")
    status_event(store, job)
    if job.status == JobStatus.queued:
        request_dispatch(queues, job.id)
    return job, True


def _examples(dataset: Dataset) -> int | None:
    return (dataset.validation or {}).get("examples")


def request_dispatch(queues: Queues, job_id: str, action: str = "start") -> None:
    # The job is already written: if this send fails, the reconciler re-sends jobs left in `queued`.
    try:
        queues.send_dispatch(job_id, action)
    except Exception as exc:
        log("error", "dispatch message not sent; the reconciler will retry", job_id=job_id, error=str(exc))


def promote_waiting(store: Store, queues: Queues, dataset: Dataset) -> int:
    """A training file finished validating: its waiting jobs move on (queued) or fail with the file's errors."""
    moved = 0
    for job in store.jobs.waiting_for(dataset.id):
        if dataset.status == DatasetStatus.validated:
            resolved = hyperparameters.resolve(job.hyperparameters, _examples(dataset))
            updated = store.jobs.transition(
                job.id, [JobStatus.validating_files], JobStatus.queued, resolved_hyperparameters=resolved
            )
            if updated:
                status_event(store, updated)
                request_dispatch(queues, updated.id)
        else:
            errors = (dataset.validation or {}).get("errors") or [{"reason": "the file is invalid"}]
            error = {"code": "invalid_training_file", "message": errors[0]["reason"], "param": "training_file"}
            updated = store.jobs.transition(
                job.id, [JobStatus.validating_files], JobStatus.failed, error=error, finished_at=now()
            )
            if updated:
                status_event(store, updated)
        moved += updated is not None
    return moved


def get_job(store: Store, client_code: str, job_id: str) -> Job:
    return store.jobs.own(job_id, client_code, "fine-tuning job", "fine_tuning_job_id")


def list_jobs(store: Store, client_code: str, after: str | None, limit: int) -> Page[Job]:
    return store.jobs.page(client_code, after, limit)


def list_events(store: Store, client_code: str, job_id: str, after: str | None, limit: int) -> Page[JobEvent]:
    return store.events.page(get_job(store, client_code, job_id).id, after, limit)


def list_checkpoints(store: Store, client_code: str, job_id: str, after: str | None, limit: int) -> Page[Checkpoint]:
    return store.checkpoints.page(get_job(store, client_code, job_id).id, after, limit)


def cancel_job(store: Store, queues: Queues, client_code: str, job_id: str) -> Job:
    job = get_job(store, client_code, job_id)
    if job.status.terminal:
        raise InvalidRequest(f"job {job_id!r} has already {job.status.value}", param="fine_tuning_job_id")
    if job.status == JobStatus.cancelling:
        return job
    # Not started: cancelled at once. Started (or being started): the dispatch worker stops the run.
    if job.status in (JobStatus.validating_files, JobStatus.queued):
        done = store.jobs.transition(job.id, [job.status], JobStatus.cancelled, finished_at=now())
        if done is not None:
            status_event(store, done)
            return done
        return cancel_job(store, queues, client_code, job_id)  # it moved meanwhile: decide again
    cancelling = store.jobs.transition(job.id, [JobStatus.dispatching, JobStatus.running], JobStatus.cancelling)
    if cancelling is None:
        return cancel_job(store, queues, client_code, job_id)
    status_event(store, cancelling)
    request_dispatch(queues, job.id, action="cancel")
    return cancelling
