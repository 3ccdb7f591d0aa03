"""The scheduled reconciler: repairs what lost or late messages left behind.

- jobs left in `queued`/`dispatching` (a dispatch message never sent or lost) are re-sent;
- jobs waiting on a file whose validation already finished are promoted;
- running jobs that went quiet are checked with their backend: a finished run's result.json is applied, a run
  that ended without one, or vanished, fails with the reason;
- runs past their deadline are stopped and failed; cancelling jobs whose run ended are settled.

`apply_run` is the one place where a backend's run state reaches a job; `settle_run` applies it the moment a backend
that watches its runs (local: the trainer is a child of this process) reports an exit, so a killed trainer fails its
job within a second instead of at the next quiet check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from functions.compute.base import RunState, TrainingBackend, run_name
from functions.core import names
from functions.core.models import DatasetStatus, Job, JobStatus, now
from functions.core.observability import log
from functions.core.settings import Settings
from functions.jobs import progress
from functions.jobs.launch import fail
from functions.jobs.service import promote_waiting, request_dispatch, status_event
from functions.store.blobs import Blobs
from functions.store.mongo import Store
from functions.store.queues import Queues

# Jobs a run's end can settle: `dispatching` too, when the trainer dies before dispatch records `running`.
SETTLEABLE = [JobStatus.dispatching, JobStatus.running, JobStatus.cancelling]


@dataclass
class Report:
    resent: list[str] = field(default_factory=list)
    promoted: int = 0
    finished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def reconcile(store: Store, blobs: Blobs, queues: Queues, backend: TrainingBackend, settings: Settings) -> Report:
    report = Report()
    current = now()
    for job in store.jobs.in_status(
        [JobStatus.queued, JobStatus.dispatching], current - settings.reconcile_stale_seconds
    ):
        request_dispatch(queues, job.id)
        store.jobs.update(job.id, [job.status])  # touch, so it is re-sent once per period, not every run
        report.resent.append(job.id)
    for job in store.jobs.in_status([JobStatus.validating_files]):
        dataset = store.datasets.get(job.training_file, job.client_code)
        if dataset is not None and dataset.status in (DatasetStatus.validated, DatasetStatus.invalid):
            report.promoted += promote_waiting(store, queues, dataset)
    for job in store.jobs.in_status([JobStatus.running, JobStatus.cancelling]):
        quiet = job.updated_at < current - settings.reconcile_silent_seconds or job.status == JobStatus.cancelling
        if job.deadline_at is not None and current > job.deadline_at:
            _time_out(store, backend, job, report)
        elif quiet and job.run_name is not None:
            outcome = apply_run(store, blobs, backend, settings, job, job.run_name)
            if outcome is not None:
                getattr(report, outcome).append(job.id)
    if any(report.to_dict().values()):
        log("info", "reconcile: repaired jobs", **report.to_dict())
    return report


def _time_out(store: Store, backend: TrainingBackend, job: Job, report: Report) -> None:
    if job.run_name:
        backend.cancel(job.run_name)
    hours = (job.deadline_at or 0) - (job.started_at or 0)
    if fail(store, job, "deadline_exceeded", f"the job ran past its {hours // 3600} h limit and was stopped"):
        report.timed_out.append(job.id)


def settle_run(store: Store, blobs: Blobs, backend: TrainingBackend, settings: Settings, name: str) -> str | None:
    """A run just ended: apply it to its job now, by the reconciler's rules. The job may still be `dispatching`
    (a trainer that died at once) or already settled by result.json's own event (then nothing moves)."""
    job = store.jobs.get(name)  # run names derive from job ids, and ours are the same string
    if job is None or run_name(job.id) != name or job.status not in SETTLEABLE:
        return None
    return apply_run(store, blobs, backend, settings, job, name)


def apply_run(
    store: Store, blobs: Blobs, backend: TrainingBackend, settings: Settings, job: Job, name: str
) -> str | None:
    """The run's state applied to the job: result.json when the trainer wrote one (the source of truth), else a
    cancel settled or a failure with the backend's reason. Every transition is conditional, so a job something else
    settled meanwhile stays as it is. Returns the Report list the job belongs in, or None."""
    run = backend.status(name)
    if run.state in (RunState.pending, RunState.running):
        store.jobs.update(job.id, [job.status])  # alive: look again after another quiet period
        return None
    prefix = f"{names.ARTIFACTS_PREFIX}{job.client_code}/{job.id}/"
    result = blobs.get_json_object(settings.artifacts_bucket, prefix + "result.json")
    if result is not None:
        done = progress.on_result(store, job, result, f"s3://{settings.artifacts_bucket}/{prefix}", blobs=blobs)
        return "finished" if done else None
    if job.status == JobStatus.cancelling:
        done = store.jobs.transition(job.id, [JobStatus.cancelling], JobStatus.cancelled, finished_at=now())
        if done:
            status_event(store, done)
        return "finished" if done else None
    reason = run.message or ("the run is gone" if run.state == RunState.missing else f"the run ended {run.state.value}")
    failed = fail(store, job, "trainer_exited", f"the trainer ended without a result: {reason}")
    return "failed" if failed else None
