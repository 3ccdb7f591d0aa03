"""Dispatch under duplicate delivery and crashes: 1,000 jobs, every message delivered twice, and a crash injected
after each state write in turn (queued→dispatching, backend submit, dispatching→running, the status event).
Every job must end in exactly one run, none lost, none stuck.

The backend here is a recording test double (allowed for this logic test); the real backends are exercised by the
integration and e2e tests."""

from __future__ import annotations

import json
import random
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import pytest

from functions.core.models import Job, JobStatus
from functions.core.settings import Settings
from functions.jobs import launch
from tests.helpers.dispatch import DATASET_ID, RecordingBackend, store_with_dataset

JOBS = int(__import__("os").environ.get("DISPATCH_TEST_JOBS", "1000"))


class Crash(Exception):
    pass


def _crash_after(fn: Callable[..., Any], job_of: Callable[..., str], plan: dict[str, int], seen: Counter[str]) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        job_id = job_of(*args, **kwargs)
        seen[job_id] += 1
        if plan.get(job_id) == seen[job_id]:
            del plan[job_id]  # crash once, at the planned write
            raise Crash(job_id)
        return result

    return wrapper


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
    # Writes per job, in order: transition(queued→dispatching), submit, transition(→running), the status event.
    plan = {job_id: 1 + int(job_id[-4:]) % 4 for job_id in ids}
    seen: Counter[str] = Counter()
    submit = backend.submit
    store.jobs.transition = _crash_after(store.jobs.transition, lambda job_id, *a, **k: job_id, plan, seen)  # type: ignore[method-assign]
    store.events.add = _crash_after(store.events.add, lambda event: event.job_id, plan, seen)  # type: ignore[method-assign]
    crashing_submit = _crash_after(submit, lambda name, spec: spec.job_id, plan, seen)

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
