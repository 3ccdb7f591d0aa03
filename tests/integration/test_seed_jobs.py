"""Seed 001's fine-tuning routes with the seed's payloads and `{"ok": ...}` envelopes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.helpers.datasets import chat_lines

Headers = dict[str, str]
BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


def upload(client: TestClient, headers: Headers, code: str = "acme") -> dict[str, Any]:
    files = {"file": ("d.jsonl", chat_lines(20))}
    response = client.post(f"/fine_tuning/upload-dataset/{code}", headers=headers, files=files)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def submit(client: TestClient, headers: Headers, **body: Any) -> Any:
    seed_body = {"model": BASE, "n_epochs": 1, "batch_size": 4, "client_code": "acme", **body}
    return client.post("/fine_tuning/submit-finetune", headers=headers, json=seed_body)


def test_submit_by_dataset_id_and_read_it_back(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    dataset = upload(client, acme)
    ingest()
    response = submit(
        client, acme, dataset_filename=dataset["dataset_id"], prompt_loss_weight=0.1, learning_rate_multiplier=0.1
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["ok"] is True
    job = body["job"]
    assert job["job_id"].startswith("ftjob-") and job["client_code"] == "acme" and job["status"] == "queued"
    assert job["dataset_filename"] == dataset["dataset_id"] and job["training_file"] == dataset["dataset_id"]
    assert job["hyperparameters"]["n_epochs"] == 1 and job["hyperparameters"]["prompt_loss_weight"] == 0.1
    one = client.get(f"/fine_tuning/jobs/{job['job_id']}", headers=acme).json()
    assert one["ok"] is True and one["job"]["job_id"] == job["job_id"]
    listed = client.get("/fine_tuning/jobs/client/acme", headers=acme).json()
    assert listed["ok"] is True and [j["job_id"] for j in listed["jobs"]] == [job["job_id"]]


def test_submit_by_s3_key_or_uri(client: TestClient, make_tenant: Callable[..., Headers]) -> None:
    acme = make_tenant("acme")
    dataset = upload(client, acme)
    uri = dataset["dataset_s3"]
    key = uri.split("/", 3)[3]
    for ref in (uri, key):
        job = submit(client, acme, dataset_filename=ref).json()["job"]
        assert job["training_file"] == dataset["dataset_id"] and job["status"] == "validating_files"


def test_submit_by_dfs_path_registers_an_unseen_file(
    client: TestClient, make_tenant: Callable[..., Headers], dfs: Path, ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    (dfs / "acme").mkdir()
    path = dfs / "acme" / "hand-made.jsonl"
    path.write_bytes(chat_lines(15))
    job = submit(client, acme, dataset_filename=str(path)).json()["job"]
    ingest()
    assert client.get(f"/fine_tuning/jobs/{job['job_id']}", headers=acme).json()["job"]["status"] == "queued"
    again = submit(client, acme, dataset_filename="acme/hand-made.jsonl").json()["job"]
    assert again["training_file"] == job["training_file"]  # same file, registered once
    # Another tenant's folder and traversal are not found.
    (dfs / "globex").mkdir()
    (dfs / "globex" / "secret.jsonl").write_bytes(chat_lines(15))
    for ref in (str(dfs / "globex" / "secret.jsonl"), "acme/../globex/secret.jsonl"):
        refused = submit(client, acme, dataset_filename=ref)
        assert refused.status_code == 400 and refused.json()["ok"] is False, ref


def test_seed_errors_use_the_seed_envelope(client: TestClient, make_tenant: Callable[..., Headers]) -> None:
    acme = make_tenant("acme")
    missing = client.get("/fine_tuning/jobs/ftjob-nope", headers=acme)
    assert missing.status_code == 404 and missing.json()["ok"] is False and "not found" in missing.json()["error"]
    other = client.get("/fine_tuning/jobs/client/globex", headers=acme)
    assert other.status_code == 404 and other.json()["ok"] is False
    no_dataset = submit(client, acme, dataset_filename="file-nope")
    assert no_dataset.status_code == 400 and "dataset_filename" in no_dataset.json()["error"]
    bad_body = client.post("/fine_tuning/submit-finetune", headers=acme, json={"model": BASE})
    assert bad_body.status_code == 422 and "dataset_filename" in bad_body.json()["error"]
