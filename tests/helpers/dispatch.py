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
