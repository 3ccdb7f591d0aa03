"""The reconciler repairs what lost or late messages leave behind: jobs stuck in `queued`, runs whose result
events were lost or that vanished, runs past their deadline, cancels whose run already ended. Real store, S3 and
SQS; the backend is a small double that reports a chosen run state (the real backends have their own tests)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from functions.compute.base import RunState, RunStatus, TrainingSpec
from functions.core.models import JobStatus, now
from functions.core.settings import get_settings
from functions.jobs.recovery import reconcile
from functions.store.blobs import get_blobs
from functions.store.mongo import get_store
from functions.store.queues import get_queues
from tests.helpers.datasets import chat_lines

Headers = dict[str, str]
BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


class StateBackend:
    name = "state"

    def __init__(self, state: RunState, message: str | None = None) -> None:
        self.state, self.message = state, message
        self.cancelled: list[str] = []

    def submit(self, run_name: str, spec: TrainingSpec) -> RunStatus:
        return RunStatus(run_name, self.state)

    def status(self, run_name: str) -> RunStatus:
        return RunStatus(run_name, self.state, self.message)

    def cancel(self, run_name: str) -> RunStatus:
        self.cancelled.append(run_name)
        return RunStatus(run_name, RunState.cancelled)

    def logs(self, run_name: str, tail: int = 200) -> str:
        return ""

    def cluster_status(self) -> dict[str, Any]:
        return {}


def job_in(client: TestClient, headers: Headers, ingest: Callable[[], int], status: JobStatus, **fields: Any) -> str:
    file_id = client.post(
        "/v1/files", headers=headers, data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", chat_lines(12))}
    ).json()["id"]
    ingest()
    job_id: str = client.post(
        "/v1/fine_tuning/jobs", headers=headers, json={"model": BASE, "training_file": file_id}
    ).json()["id"]
    get_store().jobs.col.update_one({"_id": job_id}, {"$set": {"status": status.value, **fields}})
    return job_id


def run(backend: StateBackend) -> Any:
    return reconcile(get_store(), get_blobs(), get_queues(), backend, get_settings())  # type: ignore[arg-type]


def status_of(job_id: str) -> Any:
    job = get_store().jobs.get(job_id)
    assert job is not None
    return job


def test_a_job_stuck_in_queued_is_dispatched_again(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int], dispatched: Any
) -> None:
    acme = make_tenant("acme")
    stuck = job_in(client, acme, ingest, JobStatus.queued, updated_at=now() - 3600)
    fresh = job_in(client, acme, ingest, JobStatus.queued)
    dispatched()  # the messages creation sent (lost, as far as this test is concerned)
    report = run(StateBackend(RunState.running))
    assert report.resent == [stuck] and fresh not in report.resent
    assert dispatched() == [{"job_id": stuck, "action": "start"}]
    assert run(StateBackend(RunState.running)).resent == []  # touched: not re-sent on every run


def test_a_finished_run_whose_result_event_was_lost_is_applied(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int], s3: Any
) -> None:
    acme = make_tenant("acme")
    job_id = job_in(client, acme, ingest, JobStatus.running, run_name="r", updated_at=now() - 3600)
    result = {"status": "succeeded", "trained_tokens": 99}
    # Written straight to S3 with no notification reaching the status worker (a lost event).
    key = f"artifacts/acme/{job_id}/result.json"
    get_blobs().put_bytes(get_settings().artifacts_bucket, key, json.dumps(result).encode())
    report = run(StateBackend(RunState.succeeded))
    assert report.finished == [job_id]
    job = status_of(job_id)
    assert job.status == JobStatus.succeeded and job.trained_tokens == 99 and job.fine_tuned_model


def test_a_run_that_vanished_without_a_result_fails_with_the_reason(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    job_id = job_in(client, acme, ingest, JobStatus.running, run_name="r", updated_at=now() - 3600)
    report = run(StateBackend(RunState.failed, "exit code 137: killed"))
    assert report.failed == [job_id]
    job = status_of(job_id)
    assert job.status == JobStatus.failed and job.error["code"] == "trainer_exited"
    assert "exit code 137" in job.error["message"]


def test_a_quiet_run_still_running_is_left_alone(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    job_id = job_in(client, acme, ingest, JobStatus.running, run_name="r", updated_at=now() - 3600)
    run(StateBackend(RunState.running))
    assert status_of(job_id).status == JobStatus.running


def test_a_run_past_its_deadline_is_stopped_and_failed(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    job_id = job_in(
        client, acme, ingest, JobStatus.running, run_name="r", started_at=now() - 7300, deadline_at=now() - 100
    )
    backend = StateBackend(RunState.running)
    report = run(backend)
    assert report.timed_out == [job_id] and backend.cancelled == ["r"]
    job = status_of(job_id)
    assert job.status == JobStatus.failed and job.error["code"] == "deadline_exceeded" and "2 h" in job.error["message"]


def test_a_cancel_whose_run_already_ended_is_settled(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    job_id = job_in(client, acme, ingest, JobStatus.cancelling, run_name="r")
    assert run(StateBackend(RunState.missing)).finished == [job_id]
    assert status_of(job_id).status == JobStatus.cancelled
