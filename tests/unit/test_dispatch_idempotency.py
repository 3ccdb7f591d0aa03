"""Dispatch under duplicate delivery and crashes: 1,000 jobs, every message delivered twice, and a crash injected
after each state write in turn (queued→dispatching, backend submit, dispatching→running, the status event).
Every job must end in exactly one run, none lost, none stuck.

The backend here is a counting test double (allowed for this logic test); the real backends are exercised by the
integration and e2e tests."""

from __future__ import annotations

import json
import random
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import mongomock
import pytest

from functions.compute.base import RunState, RunStatus, TrainingSpec
from functions.core.models import Dataset, DatasetStatus, Job, JobStatus
from functions.core.settings import Settings
from functions.jobs import dispatch
from functions.store.mongo import Store

JOBS = int(__import__("os").environ.get("DISPATCH_TEST_JOBS", "1000"))


class Crash(Exception):
    pass


class CountingBackend:
    name = "counting"

    def __init__(self) -> None:
        self.runs: dict[str, TrainingSpec] = {}
        self.starts: Counter[str] = Counter()

    def submit(self, run_name: str, spec: TrainingSpec) -> RunStatus:
        if run_name not in self.runs:  # idempotent by name, like every real backend
            self.runs[run_name] = spec
            self.starts[run_name] += 1
        return RunStatus(run_name, RunState.running)

    def status(self, run_name: str) -> RunStatus:
        return RunStatus(run_name, RunState.running if run_name in self.runs else RunState.missing)

    def cancel(self, run_name: str) -> RunStatus:
        return RunStatus(run_name, RunState.cancelled)

    def logs(self, run_name: str, tail: int = 200) -> str:
        return ""

    def cluster_status(self) -> dict[str, Any]:
        return {}


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
    backend = CountingBackend()
    for first in range(0, jobs, SHARD):
        _run_shard(backend, [f"ftjob-{i:024d}" for i in range(first, min(first + SHARD, jobs))])
    assert len(backend.runs) == jobs and set(backend.starts.values()) == {1}


def _run_shard(backend: CountingBackend, ids: list[str]) -> None:
    store = Store(mongomock.MongoClient()["dispatch"])
    store.ensure_indexes()
    jobs = len(ids)
    settings = Settings(_env_file=None, aws_bucket_name="bucket")
    store.datasets.insert(
        Dataset(
            id="file-train",
            client_code="acme",
            filename="t.jsonl",
            bucket="bucket",
            s3_key="datasets/acme/t",
            source="api",
            status=DatasetStatus.validated,
        )
    )
    for job_id in ids:
        store.jobs.create(Job(id=job_id, client_code="acme", model="m", training_file="file-train"))
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
            dispatch.handle(store, backend, settings, body)
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
