"""Fine-tuning jobs as the integration tests drive them through the API: a validated training file, a job on it,
the job moved to running as the dispatch worker would, and the trainer's artifacts written where the status worker
reads them (`Jobs`, the `jobs` fixture of tests/integration/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.helpers.datasets import chat_lines
from tests.helpers.tiny_models import BASE

Headers = dict[str, str]


def validated_file(client: TestClient, headers: Headers, ingest: Callable[[], int], data: bytes | None = None) -> str:
    """A training file uploaded through /v1/files and validated by the ingest worker; its id."""
    file_id = client.post(
        "/v1/files", headers=headers, data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", data or chat_lines(20))}
    ).json()["id"]
    ingest()
    return str(file_id)


def create(client: TestClient, headers: Headers, **body: Any) -> Any:
    """POST /v1/fine_tuning/jobs on the base model unless `body` names another; the response."""
    return client.post("/v1/fine_tuning/jobs", headers=headers, json={"model": BASE, **body})


class Jobs:
    def __init__(self, client: TestClient, ingest: Callable[[], int], s3: Any, status_worker: Callable[[], int]):
        self.client, self.ingest, self.s3, self.status_worker = client, ingest, s3, status_worker

    def file(self, headers: Headers, data: bytes | None = None) -> str:
        return validated_file(self.client, headers, self.ingest, data)

    def running(self, headers: Headers, data: bytes | None = None, **body: Any) -> str:
        """A job on a fresh validated file, moved to running as the dispatch worker would; its id."""
        from functions.core.models import JobStatus
        from functions.store.mongo import get_store

        made = create(self.client, headers, training_file=self.file(headers, data), **body)
        assert made.status_code == 200, made.text
        job_id = str(made.json()["id"])
        get_store().jobs.transition(job_id, ["queued"], JobStatus.running, run_name=job_id)
        return job_id

    def write(self, key: str, value: dict[str, Any] | bytes) -> None:
        """An object in the artifacts bucket (a dict as JSON), as the trainer writes it; the status worker not run."""
        from functions.core.settings import get_settings

        body = value if isinstance(value, bytes) else json.dumps(value).encode()
        self.s3.put_object(Bucket=get_settings().artifacts_bucket, Key=key, Body=body)

    def report(self, key: str, value: dict[str, Any] | bytes) -> int:
        """`write`, then let the status worker handle what arrived; the messages it handled."""
        self.write(key, value)
        return self.status_worker()

    def get(self, headers: Headers, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=headers).json()
        return job
