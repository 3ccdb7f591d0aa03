"""The dispatch worker's surroundings without the cloud: a store holding one validated dataset, and a training
backend double that records what it is asked to start (the dispatch tests and bench/dispatch.py use both)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import mongomock

from functions.compute.base import RunState, RunStatus, TrainingSpec
from functions.core.models import Dataset, DatasetStatus
from functions.store.mongo import Store

DATASET_ID = "file-train"


class RecordingBackend:
    """Idempotent by run name, like every real backend: a run starts once however often it is submitted. Records
    each run's spec, how many times it started, and when it was first submitted (time.perf_counter())."""

    name = "recording"

    def __init__(self) -> None:
        self.runs: dict[str, TrainingSpec] = {}
        self.starts: Counter[str] = Counter()
        self.started: dict[str, float] = {}

    def submit(self, run_name: str, spec: TrainingSpec) -> RunStatus:
        if run_name not in self.runs:
            self.started[run_name] = time.perf_counter()
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


def store_with_dataset(database: str = "dispatch", bucket: str = "bucket") -> Store:
    """An empty store (mongomock) with indexes and one validated dataset, DATASET_ID, of tenant acme."""
    store = Store(mongomock.MongoClient()[database])
    store.ensure_indexes()
    store.datasets.insert(
        Dataset(
            id=DATASET_ID,
            client_code="acme",
            filename="t.jsonl",
            bucket=bucket,
            s3_key="datasets/acme/t",
            source="api",
            status=DatasetStatus.validated,
        )
    )
    return store


class Crash(Exception):
    """A crash injected into dispatch right after one of its state writes."""


def crash_plan(job_ids: list[str]) -> dict[str, int]:
    """For each job, which of its writes to crash after: dispatch writes, in order, transition(queued→dispatching),
    the backend submit, transition(→running) and the status event; the jobs take turns over the four."""
    return {job_id: 1 + int(job_id[-4:]) % 4 for job_id in job_ids}


def inject_crashes(store: Store, backend: Any, plan: dict[str, int]) -> tuple[Any, Any]:
    """Make `store` crash (raise Crash) once per planned job, right after the planned write has happened; returns the
    backend's own submit and its crashing wrapper (to install around each delivery)."""
    seen: Counter[str] = Counter()

    def after(fn: Any, job_of: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            job_id = job_of(*args, **kwargs)
            seen[job_id] += 1
            if plan.get(job_id) == seen[job_id]:
                del plan[job_id]  # crash once, at the planned write
                raise Crash(job_id)
            return result

        return wrapper

    store.jobs.transition = after(store.jobs.transition, lambda job_id, *a, **k: job_id)  # type: ignore[method-assign]
    store.events.add = after(store.events.add, lambda event: event.job_id)  # type: ignore[method-assign]
    return backend.submit, after(backend.submit, lambda name, spec: spec.job_id)
