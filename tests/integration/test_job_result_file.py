"""Step metrics as OpenAI publishes them: a succeeded job's `metrics.jsonl` becomes a CSV result file (purpose
`fine-tune-results`) in `result_files`, readable through the Files API, never usable as training data."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from functions.jobs.results import metrics_csv
from tests.helpers.jobs import Jobs
from tests.helpers.openai_schema import assert_openai
from tests.integration.test_jobs_api import create

Headers = dict[str, str]


def _line(step: int, loss: float, eval_loss: float | None = None) -> dict[str, Any]:
    return {"step": step, "total_steps": 4, "epoch": 1, "loss": loss, "eval_loss": eval_loss, "learning_rate": 1e-4}


def test_succeeded_job_lists_its_step_metrics_as_a_csv_result_file(
    client: TestClient, make_tenant: Callable[..., Headers], jobs: Jobs
) -> None:
    acme = make_tenant("acme")
    job_id = jobs.running(acme)
    prefix = f"artifacts/acme/{job_id}/"
    # Given a resumed run that redid step 2 (its later line wins) and a validation loss at step 4
    lines = [_line(1, 2.5), _line(2, 2.0), _line(2, 1.9), _line(3, 1.5), _line(4, 1.2, 1.4)]
    jobs.write(prefix + "metrics.jsonl", b"".join(json.dumps(x).encode() + b"\n" for x in lines))
    jobs.report(prefix + "result.json", {"status": "succeeded", "trained_tokens": 99})
    done = jobs.get(acme, job_id)
    assert done["status"] == "succeeded" and len(done["result_files"]) == 1
    assert_openai("FineTuningJob", done)
    file_id = done["result_files"][0]
    meta = client.get(f"/v1/files/{file_id}", headers=acme).json()
    assert meta["purpose"] == "fine-tune-results" and meta["status"] == "processed"
    assert_openai("OpenAIFile", {k: v for k, v in meta.items() if k != "validation"})
    content = client.get(f"/v1/files/{file_id}/content", headers=acme)
    rows = list(csv.DictReader(io.StringIO(content.text)))
    assert [(r["step"], r["train_loss"], r["valid_loss"]) for r in rows] == [
        ("1", "2.5", ""),
        ("2", "1.9", ""),
        ("3", "1.5", ""),
        ("4", "1.2", "1.4"),
    ]
    # A second result event (redelivery) keeps the same one file
    jobs.report(prefix + "result.json", {"status": "succeeded", "trained_tokens": 99})
    listed = client.get("/v1/files?purpose=fine-tune-results", headers=acme).json()["data"]
    assert [f["id"] for f in listed] == [file_id]
    # Then it cannot train a job, and another tenant cannot read it
    refused = create(client, acme, training_file=file_id)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "training_file"
    globex = make_tenant("globex")
    assert client.get(f"/v1/files/{file_id}/content", headers=globex).status_code == 404


def test_metrics_csv_skips_lines_that_are_not_steps() -> None:
    data, rows = metrics_csv([b'{"step": 1, "loss": 1.0}', b"not json", b"[1]", b'{"step": 0}', b'{"loss": 3}'])
    assert rows == 1
    assert data.decode().splitlines() == [
        "step,train_loss,valid_loss,epoch,learning_rate,tokens_per_second,trained_tokens",
        "1,1.0,,,,,",
    ]
