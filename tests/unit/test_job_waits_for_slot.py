"""A job whose run waits for a free slot (the local backend trains a few at a time) shows `queued`, not `running`,
until its trainer really starts; then its first progress moves it to `running` with its start time."""

from __future__ import annotations

from typing import Any

import mongomock

from functions.compute.base import RunState, RunStatus
from functions.core.models import Dataset, DatasetStatus, Job, JobStatus
from functions.core.settings import Settings
from functions.jobs import launch, progress
from functions.store.mongo import Store

JOB = "ftjob-q7q2m4xwzp3rt6yz5abc2def"


class OneSlotBackend:
    """A backend whose only slot is taken: every submit is accepted and waits (RunState.pending)."""

    name = "local"

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, run_name: str, spec: Any) -> RunStatus:
        self.submitted.append(run_name)
        return RunStatus(run_name, RunState.pending, "waiting for a free slot")


def test_a_job_behind_another_stays_queued_until_its_trainer_starts() -> None:
    store = Store(mongomock.MongoClient()["slots"])
    store.datasets.insert(Dataset(id="file-x", client_code="acme", filename="x.jsonl", bucket="b", s3_key="k",
                                  source="api", status=DatasetStatus.validated))  # fmt: skip
    store.jobs.create(Job(id=JOB, client_code="acme", model="m", training_file="file-x", status=JobStatus.queued))
    backend = OneSlotBackend()

    # When dispatch submits it while the slot is taken
    launch.start(store, backend, Settings(), store.jobs.get(JOB))  # type: ignore[arg-type]
    job = store.jobs.get(JOB)
    assert job is not None and backend.submitted == [f"{job.run_name}"]
    # Then it shows queued (internally dispatching), knows its run, and has no start time yet
    assert job.status == JobStatus.dispatching and job.status.public == "queued" and job.started_at is None
    assert any("Waiting for a free training slot" in e.message for e in store.events.page(JOB, None, 10).data)
    # and a second delivery of the dispatch message submits nothing new in between
    launch.start(store, backend, Settings(), job)  # type: ignore[arg-type]
    assert (store.jobs.get(JOB) or job).status == JobStatus.dispatching

    # When its trainer starts and reports progress, it is running from then on
    progress.on_progress(store, job, {"status": "running", "step": 1, "total_steps": 10, "loss": 1.0, "attempt": 1})
    running = store.jobs.get(JOB)
    assert running is not None and running.status == JobStatus.running and running.started_at is not None
    assert running.deadline_at is not None
