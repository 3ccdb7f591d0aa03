"""A distributed run whose workers Ray Train restarted says so in the job's events: the first progress of the new
attempt carries `worker_restarts` (rank 0 writes it), and the event names the attempt and the step it resumed at."""

from __future__ import annotations

import mongomock

from functions.core.models import Job, JobStatus
from functions.jobs import progress
from functions.store.mongo import Store

JOB = "ftjob-k7q2m4xwzp3rt6yz5abc2dee"


def test_a_worker_restart_is_a_job_event_once() -> None:
    store = Store(mongomock.MongoClient()["restarts"])
    store.jobs.create(Job(id=JOB, client_code="acme", model="m", training_file="file-x", status=JobStatus.running))

    def report(step: int, attempt: int, restarts: int = 0) -> None:
        job = store.jobs.get(JOB)
        assert job is not None
        body = {"step": step, "total_steps": 20, "loss": 1.0, "attempt": attempt, "worker_restarts": restarts}
        progress.on_progress(store, job, body)

    report(5, 1)
    report(4, 2, restarts=1)  # the workers came back and resumed from the checkpoint at step 4
    report(5, 2, restarts=1)
    events = [e for e in store.events.page(JOB, None, 100).data if e.data.get("worker_restarts")]
    assert len(events) == 1
    assert events[0].level == "warn" and "restarted (restart 1, attempt 2)" in events[0].message
    assert "last complete checkpoint at step 4" in events[0].message
