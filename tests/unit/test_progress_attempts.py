"""Attempts in the trainer's progress.json and result.json: a resumed attempt's progress is news even below the step
the dead one reached; a late result of an earlier attempt never settles the job."""

from __future__ import annotations

import mongomock
import pytest

from functions.core.models import Job, JobStatus
from functions.jobs import progress
from functions.store.mongo import Store

JOB = "ftjob-k7q2m4xwzp3rt6yz5abc2def"
PREFIX = f"s3://bucket/artifacts/acme/{JOB}/"


@pytest.fixture
def store() -> Store:
    store = Store(mongomock.MongoClient()["attempts"])
    store.jobs.create(Job(id=JOB, client_code="acme", model="m", training_file="file-x", status=JobStatus.running))
    return store


def _job(store: Store) -> Job:
    job = store.jobs.get(JOB)
    assert job is not None
    return job


def _progress(step: int, attempt: int | None) -> dict[str, object]:
    return {"status": "running", "step": step, "total_steps": 20, "loss": 1.0 / step, "attempt": attempt}


def test_resumed_attempt_reports_progress_below_the_step_the_dead_one_reached(store: Store) -> None:
    progress.on_progress(store, _job(store), _progress(9, 1))
    # Given attempt 2 resumed from the checkpoint at step 8
    progress.on_progress(store, _job(store), _progress(8, 2))
    assert (_job(store).progress or {})["step"] == 8
    # Then a late progress of attempt 1 moves nothing, and attempt 2 goes on
    progress.on_progress(store, _job(store), _progress(10, 1))
    assert (_job(store).progress or {})["step"] == 8
    progress.on_progress(store, _job(store), _progress(9, 2))
    assert (_job(store).progress or {})["step"] == 9
    # and within one attempt progress never goes backwards
    progress.on_progress(store, _job(store), _progress(7, 2))
    assert (_job(store).progress or {})["step"] == 9


def test_result_of_an_earlier_attempt_does_not_settle_the_job(store: Store) -> None:
    progress.on_progress(store, _job(store), _progress(3, 2))

    stale = progress.on_result(store, _job(store), {"status": "failed", "attempt": 1}, PREFIX)
    assert stale is None and _job(store).status == JobStatus.running

    done = progress.on_result(store, _job(store), {"status": "cancelled", "attempt": 2}, PREFIX)
    assert done is not None and done.status == JobStatus.cancelled


def test_files_without_attempts_work_as_before(store: Store) -> None:
    progress.on_progress(store, _job(store), _progress(5, None))
    progress.on_progress(store, _job(store), _progress(4, None))
    assert (_job(store).progress or {})["step"] == 5
    done = progress.on_result(store, _job(store), {"status": "cancelled"}, PREFIX)
    assert done is not None and done.status == JobStatus.cancelled
