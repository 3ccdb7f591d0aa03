"""SageMaker's EventBridge "Training Job State Change" events, as AWS sends them (events/eventbridge_*), reach the
status worker and settle the job the sagemaker backend started: the event's TrainingJobName is the run name the
backend gave the job, and the job record is found by it. result.json stays the source of truth when it exists."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import mongomock
import pytest
from moto import mock_aws

from functions.compute.base import run_name
from functions.compute.sagemaker import SageMakerTrainingBackend
from functions.core.models import Job, JobStatus
from functions.core.settings import Settings
from functions.jobs import progress
from functions.store.blobs import Blobs
from functions.store.mongo import Store
from functions.workers import status as status_worker

EVENTS = Path(__file__).resolve().parents[2] / "events"
JOB = "ftjob-k7q2m4xwzp3rt6yz5abc2def"  # the job the sample events are about
BUCKET = "ministudio-dev-artifacts-example"  # the sample events' artifacts bucket


def event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, Blobs, Settings]]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = Settings(
        aws_region="us-east-1",
        artifacts_bucket_name=BUCKET,
        compute_backend="sagemaker",
        trainer_image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/ministudio-trainer-dev:latest",
        sagemaker_execution_role_arn="arn:aws:iam::123456789012:role/exec",
    )
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        store = Store(mongomock.MongoClient()["events"])
        store.jobs.create(
            Job(
                id=JOB,
                client_code="acme",
                model="HuggingFaceTB/SmolLM2-135M-Instruct",
                training_file="file-abc123",
                status=JobStatus.running,
                backend="sagemaker",
                run_name=run_name(JOB),
            )
        )
        yield store, Blobs(settings), settings


def test_the_events_training_job_name_is_the_run_name_the_backend_gives_the_job() -> None:
    detail = event("eventbridge_training_job_state_change.json")["detail"]
    assert detail["TrainingJobName"] == run_name(JOB)
    request = SageMakerTrainingBackend(
        Settings(trainer_image_uri="i", sagemaker_execution_role_arn="r")
    ).training_job_request
    from functions.compute.base import TrainingSpec

    sent = request(
        run_name(JOB),
        TrainingSpec(
            job_id=JOB,
            tenant="acme",
            model="m",
            training_file="s3://b/datasets/acme/f/chats.jsonl",
            output=f"s3://{BUCKET}/artifacts/acme/{JOB}/",
        ),
    )
    assert sent["TrainingJobName"] == detail["TrainingJobName"]
    assert sent["OutputDataConfig"] == {
        "S3OutputPath": detail["OutputDataConfig"]["S3OutputPath"].replace("ministudio-dev-artifacts-example", BUCKET)
    }
    tags = {t["Key"]: t["Value"] for t in sent["Tags"]}
    assert tags == detail["Tags"]


def test_a_failed_job_without_result_fails_with_sagemakers_reason(world: tuple[Store, Blobs, Settings]) -> None:
    store, blobs, settings = world
    sample = event("eventbridge_sagemaker_training_failed.json")

    progress.on_backend_event(store, blobs, settings.artifacts_bucket, sample)

    job = store.jobs.get(JOB)
    assert job is not None and job.status == JobStatus.failed
    assert job.error == {"code": "training_failed", "message": sample["detail"]["FailureReason"], "param": None}


@pytest.mark.parametrize(
    ("sample", "status"),
    [
        ("eventbridge_sagemaker_training_stopped.json", JobStatus.cancelled),  # stopped, no result: cancelled
        ("eventbridge_sagemaker_training_in_progress.json", JobStatus.running),  # in progress: nothing changes
    ],
)
def test_a_job_without_result_follows_sagemakers_state(
    world: tuple[Store, Blobs, Settings], sample: str, status: JobStatus
) -> None:
    store, blobs, settings = world
    progress.on_backend_event(store, blobs, settings.artifacts_bucket, event(sample))
    job = store.jobs.get(JOB)
    assert job is not None and job.status == status


def test_result_json_wins_over_the_events_state(world: tuple[Store, Blobs, Settings]) -> None:
    # Given the trainer wrote result.json (succeeded) before SageMaker reported the job stopped
    store, blobs, settings = world
    result = {"status": "succeeded", "trained_tokens": 1234}
    blobs.put_bytes(BUCKET, f"artifacts/acme/{JOB}/result.json", json.dumps(result).encode())

    progress.on_backend_event(
        store, blobs, settings.artifacts_bucket, event("eventbridge_sagemaker_training_stopped.json")
    )

    job = store.jobs.get(JOB)
    assert job is not None and job.status == JobStatus.succeeded and job.trained_tokens == 1234
    assert job.fine_tuned_model and job.fine_tuned_model.endswith(f":{JOB}")


def test_the_status_worker_takes_the_event_from_its_queue(
    world: tuple[Store, Blobs, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the Completed event as EventBridge → SQS delivers it, and the trainer's result.json
    store, blobs, settings = world
    blobs.put_bytes(BUCKET, f"artifacts/acme/{JOB}/result.json", json.dumps({"status": "succeeded"}).encode())
    monkeypatch.setattr(status_worker, "get_store", lambda: store)
    monkeypatch.setattr(status_worker, "get_blobs", lambda: blobs)
    monkeypatch.setattr(status_worker, "get_settings", lambda: settings)

    response = status_worker.handler(event("eventbridge_training_job_state_change_sqs.json"), None)

    assert response == {"batchItemFailures": []}
    job = store.jobs.get(JOB)
    assert job is not None and job.status == JobStatus.succeeded
