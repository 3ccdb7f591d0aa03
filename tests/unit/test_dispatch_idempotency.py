"""Dispatch under duplicate delivery and crashes: 1,000 jobs, every message delivered twice, and a crash injected
after each state write in turn (queued→dispatching, backend submit, dispatching→running, the status event).
Every job must end in exactly one run, none lost, none stuck.

The backend here is a recording test double (allowed for this logic test); the real backends are exercised by the
integration and e2e tests."""

from __future__ import annotations

import json
import random
from collections import Counter, deque

import pytest

from functions.core.models import Job, JobStatus
from functions.core.settings import Settings
from functions.jobs import launch
from tests.helpers.dispatch import DATASET_ID, Crash, RecordingBackend, crash_plan, inject_crashes, store_with_dataset

JOBS = int(__import__("os").environ.get("DISPATCH_TEST_JOBS", "1000"))


SHARD = 40  # jobs per database: mongomock scans a collection per query, so 1,000 in one would be quadratic


@pytest.mark.parametrize("jobs", [JOBS])
def test_duplicate_dispatch_with_crashes_starts_exactly_one_run_per_job(jobs: int) -> None:
    backend = RecordingBackend()
    for first in range(0, jobs, SHARD):
        _run_shard(backend, [f"ftjob-{i:024d}" for i in range(first, min(first + SHARD, jobs))])
    assert len(backend.runs) == jobs and set(backend.starts.values()) == {1}


def _run_shard(backend: RecordingBackend, ids: list[str]) -> None:
    store = store_with_dataset()
    jobs = len(ids)
    settings = Settings(_env_file=None, aws_bucket_name="bucket")
    for job_id in ids:
        store.jobs.create(Job(id=job_id, client_code="acme", model="m", training_file=DATASET_ID))
    plan = crash_plan(ids)
    submit, crashing_submit = inject_crashes(store, backend, plan)

    # Every message delivered twice, in a shuffled order; a crashed delivery comes back (SQS visibility timeout).
    queue = deque(json.dumps({"job_id": j}) for j in ids * 2)
    random.Random(7).shuffle(queue)
    deliveries = 0
    while queue:
        body = queue.popleft()
        deliveries += 1
        try:
            backend.submit = crashing_submit  # type: ignore[method-assign]
            launch.handle(store, backend, settings, body)
        except Crash:
            queue.append(body)
        assert deliveries < jobs * 10, "dispatch is not converging"

    backend.submit = submit  # type: ignore[method-assign]
    assert not plan, "every planned crash happened"
    statuses = Counter(Job.model_validate(d).status for d in store.jobs.col.find())
    assert statuses == {JobStatus.running: jobs}
    assert all(backend.starts[job_id] == 1 for job_id in ids)
    running_events = store.events.col.count_documents({"message": "Fine-tuning job started"})
    assert running_events == jobs
