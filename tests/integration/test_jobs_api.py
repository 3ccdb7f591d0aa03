"""Fine-tuning jobs through the API: creation and its 4xx, the wait for validation, idempotency keys, cancel,
and the trainer's artifacts in S3 turning into events, checkpoints, a result and a fine-tuned model (status worker)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from functions.core.model_kinds import EMBEDDING_MODEL
from functions.core.settings import get_settings
from tests.helpers.datasets import chat_lines
from tests.helpers.jobs import Jobs, create, validated_file
from tests.helpers.openai_schema import assert_openai
from tests.helpers.tiny_models import BASE

Headers = dict[str, str]


def test_create_job_queues_it_and_sends_one_dispatch_message(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int], dispatched: Any
) -> None:
    acme = make_tenant("acme")
    file_id = validated_file(client, acme, ingest)
    response = create(client, acme, training_file=file_id, suffix="calc", hyperparameters={"n_epochs": 2})
    assert response.status_code == 200, response.text
    job = response.json()
    assert_openai("FineTuningJob", job)
    assert job["status"] == "queued" and job["organization_id"] == "acme"
    assert job["hyperparameters"]["n_epochs"] == 2 and isinstance(job["hyperparameters"]["batch_size"], int)
    assert dispatched() == [{"job_id": job["id"], "action": "start"}]
    listed = client.get("/v1/fine_tuning/jobs", headers=acme).json()
    assert_openai("ListPaginatedFineTuningJobsResponse", listed)
    assert [j["id"] for j in listed["data"]] == [job["id"]]
    events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events", headers=acme).json()
    assert_openai("ListFineTuningJobEventsResponse", events)
    assert {e["message"] for e in events["data"]} >= {"Created fine-tuning job", "Fine-tuning job queued"}


def test_bad_requests_name_the_field(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    globex = make_tenant("globex")
    good = validated_file(client, acme, ingest)
    theirs = validated_file(client, globex, ingest)
    bad_data = chat_lines(12).replace(b'"assistant"', b'"bot"', 1)
    invalid = validated_file(client, acme, ingest, bad_data)
    cases = [
        ({"training_file": good, "model": "gpt-9"}, "model"),
        ({"training_file": "file-nope"}, "training_file"),
        ({"training_file": theirs}, "training_file"),
        ({"training_file": invalid}, "training_file"),
        ({"training_file": good, "hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
        ({"training_file": good, "hyperparameters": {"batch_size": 1000}}, "hyperparameters.batch_size"),
        (
            {"training_file": good, "hyperparameters": {"learning_rate_multiplier": 0}},
            "hyperparameters.learning_rate_multiplier",
        ),
        ({"training_file": good, "hyperparameters": {"n_epochs": "many"}}, "hyperparameters.n_epochs"),
        ({"training_file": good, "hyperparameters": {"warp": 9}}, "hyperparameters.warp"),
        ({"training_file": good, "suffix": "x" * 19}, "suffix"),
        ({"training_file": good, "seed": -1}, "seed"),
        ({"training_file": good, "method": {"type": "dpo"}}, "method.type"),
    ]
    for body, param in cases:
        response = client.post("/v1/fine_tuning/jobs", headers=acme, json={"model": BASE, **body})
        assert response.status_code == 400, (body, response.text)
        assert_openai("ErrorResponse", response.json())
        assert response.json()["error"]["param"] == param, (body, response.json())
    assert "failed validation" in create(client, acme, training_file=invalid).json()["error"]["message"]
    assert client.get("/v1/fine_tuning/jobs", headers=acme).json()["data"] == []


def test_job_waits_in_validating_files_until_the_file_is_validated(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int], dispatched: Any
) -> None:
    acme = make_tenant("acme")
    file_id = client.post(
        "/v1/files", headers=acme, data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", chat_lines(20))}
    ).json()["id"]
    job = create(client, acme, training_file=file_id).json()
    assert job["status"] == "validating_files" and dispatched() == []
    ingest()
    assert client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=acme).json()["status"] == "queued"
    assert dispatched() == [{"job_id": job["id"], "action": "start"}]


def test_job_on_a_file_that_turns_out_invalid_fails_with_the_files_error(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    data = chat_lines(3)
    file_id = client.post(
        "/v1/files", headers=acme, data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", data)}
    ).json()["id"]
    job = create(client, acme, training_file=file_id).json()
    ingest()
    failed = client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=acme).json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "invalid_training_file"
    assert "at least 10" in failed["error"]["message"]


def test_idempotency_key_returns_the_same_job(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int], dispatched: Any
) -> None:
    acme = make_tenant("acme")
    file_id = validated_file(client, acme, ingest)
    headers = {**acme, "Idempotency-Key": "order-42"}
    first = create(client, headers, training_file=file_id).json()
    second = create(client, headers, training_file=file_id).json()
    assert first["id"] == second["id"]
    assert len(client.get("/v1/fine_tuning/jobs", headers=acme).json()["data"]) == 1
    assert len(dispatched()) == 1
    other = create(client, {**acme, "Idempotency-Key": "order-43"}, training_file=file_id).json()
    assert other["id"] != first["id"]


def test_cancel_before_dispatch_is_immediate(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    job = create(client, acme, training_file=validated_file(client, acme, ingest)).json()
    cancelled = client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=acme)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert_openai("FineTuningJob", cancelled.json())
    again = client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=acme)
    assert again.status_code == 400


def test_trainer_artifacts_become_events_checkpoints_and_a_fine_tuned_model(
    client: TestClient, make_tenant: Callable[..., Headers], jobs: Jobs, s3: Any
) -> None:
    acme = make_tenant("acme")
    job_id = jobs.running(acme, suffix="calc")
    prefix = f"artifacts/acme/{job_id}/"
    for step in (5, 10):
        progress = {
            "status": "running",
            "step": step,
            "total_steps": 20,
            "epoch": 1,
            "loss": 2.0 / step,
            "learning_rate": 1e-4,
            "tokens_per_second": 150.0,
            "eta_seconds": 30,
        }
        jobs.report(prefix + "progress.json", progress)
    jobs.report(prefix + "checkpoints/epoch-1/adapter_model.safetensors", b"w")
    running = client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=acme).json()
    assert running["status"] == "running" and running["progress"]["step"] == 10 and running["estimated_finish"]
    adapter_uri = f"s3://{get_settings().artifacts_bucket}/{prefix}adapter/"
    jobs.report(prefix + "result.json", {"status": "succeeded", "trained_tokens": 1234, "adapter_uri": adapter_uri})
    done = client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=acme).json()
    assert_openai("FineTuningJob", done)
    name = f"ft:{BASE}:acme:calc:{job_id}"
    assert done["status"] == "succeeded" and done["fine_tuned_model"] == name and done["trained_tokens"] == 1234
    events = client.get(f"/v1/fine_tuning/jobs/{job_id}/events", headers=acme, params={"limit": 100}).json()["data"]
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [e["data"]["step"] for e in metrics] == [10, 5] and "training loss=0.2000" in metrics[0]["message"]
    checkpoints = client.get(f"/v1/fine_tuning/jobs/{job_id}/checkpoints", headers=acme).json()
    assert_openai("ListFineTuningJobCheckpointsResponse", checkpoints)
    assert checkpoints["data"][0]["step_number"] == 10
    model = client.get(f"/v1/models/{name}", headers=acme)
    assert model.status_code == 200 and model.json()["owned_by"] == "acme"
    assert_openai("Model", model.json())
    listed = client.get("/v1/models", headers=acme).json()
    assert_openai("ListModelsResponse", listed)
    assert {m["id"] for m in listed["data"]} == {BASE, EMBEDDING_MODEL, name}
    globex = make_tenant("globex")
    assert client.get(f"/v1/models/{name}", headers=globex).status_code == 404
    assert client.delete(f"/v1/models/{BASE}", headers=acme).status_code == 400
    deleted = client.delete(f"/v1/models/{name}", headers=acme)
    assert_openai("DeleteModelResponse", deleted.json())
    assert client.get(f"/v1/models/{name}", headers=acme).status_code == 404
    left = s3.list_objects_v2(Bucket=get_settings().artifacts_bucket, Prefix=prefix + "checkpoints/")
    assert left.get("KeyCount", 0) == 0


def test_failed_result_carries_the_trainers_error(make_tenant: Callable[..., Headers], jobs: Jobs) -> None:
    acme = make_tenant("acme")
    job_id = jobs.running(acme)
    error = {"code": "invalid_hyperparameters", "message": "batch_size 64 exceeds memory", "param": "batch_size"}
    jobs.report(f"artifacts/acme/{job_id}/result.json", {"status": "failed", "error": error})
    failed = jobs.get(acme, job_id)
    assert failed["status"] == "failed" and failed["error"] == error


def test_sagemaker_state_change_fails_a_job_that_left_no_result(
    make_tenant: Callable[..., Headers], jobs: Jobs
) -> None:
    from pathlib import Path

    from functions.local.lambda_context import new_context
    from functions.workers import status

    acme = make_tenant("acme")
    job_id = jobs.running(acme)
    event = json.loads(
        (Path(__file__).parents[2] / "events" / "eventbridge_training_job_state_change_sqs.json").read_text()
    )
    body = json.loads(event["Records"][0]["body"])
    body["detail"].update(TrainingJobName=job_id, TrainingJobStatus="Failed", FailureReason="CapacityError: no ml.g5")
    event["Records"][0]["body"] = json.dumps(body)
    assert status.handler(event, new_context("status", 60)) == {"batchItemFailures": []}
    failed = jobs.get(acme, job_id)
    assert failed["status"] == "failed" and "CapacityError" in failed["error"]["message"]
