"""Every Lambda entry point invoked with the real-shaped events under events/ (the ones `sam local invoke` uses),
against moto, redis-server and the store — the way API Gateway, SQS and EventBridge would call them."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from functions.core.models import JobStatus
from functions.local.lambda_context import new_context
from functions.store.mongo import get_store
from tests.helpers.datasets import chat_lines

EVENTS = Path(__file__).resolve().parents[2] / "events"
Headers = dict[str, str]


def event(name: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return value


def body(response: dict[str, Any]) -> Any:
    raw = response["body"]
    return json.loads(base64.b64decode(raw) if response.get("isBase64Encoded") else raw)


def test_api_handler_answers_api_gateway_http_events(make_tenant: Callable[..., Headers]) -> None:
    from functions.api import handler

    health = handler.handler(event("apigw_http_health.json"), new_context("api", 30))
    assert health["statusCode"] == 200 and body(health)["status"] == "healthy"
    assert health["headers"]["x-request-id"]
    listing = event("apigw_http_list_files.json")
    unauthorized = handler.handler(listing, new_context("api", 30))
    assert unauthorized["statusCode"] == 401 and body(unauthorized)["error"]["code"] == "invalid_api_key"
    acme = make_tenant("acme")
    listing["headers"]["authorization"] = acme["Authorization"]
    listed = handler.handler(listing, new_context("api", 30))
    assert listed["statusCode"] == 200 and body(listed)["object"] == "list"


def test_dispatch_handler_takes_the_sample_event(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    from functions.workers import dispatch

    sample = event("sqs_dispatch_job.json")
    # A job id nobody knows: acknowledged (nothing to retry), not a poison message.
    assert dispatch.handler(sample, new_context("dispatch", 60)) == {"batchItemFailures": []}
    acme = make_tenant("acme")
    file_id = client.post(
        "/v1/files", headers=acme, data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", chat_lines(20))}
    ).json()["id"]
    ingest()
    job = client.post(
        "/v1/fine_tuning/jobs",
        headers=acme,
        json={"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "training_file": file_id},
    ).json()
    # Cancelled before the worker runs: the sample message for it must start nothing.
    client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=acme)
    sample["Records"][0]["body"] = json.dumps({"job_id": job["id"]})
    assert dispatch.handler(sample, new_context("dispatch", 60)) == {"batchItemFailures": []}
    stored = get_store().jobs.get(job["id"])
    assert stored is not None and stored.status == JobStatus.cancelled and stored.run_name is None


def test_reconcile_handler_runs_on_the_schedule_event(env: Any) -> None:
    from functions.workers import reconcile

    report = reconcile.handler(event("eventbridge_reconcile_schedule.json"), new_context("reconcile", 240))
    assert set(report) == {
        "resent",
        "promoted",
        "finished",
        "failed",
        "timed_out",
        "deploys_resent",
        "deployments_changed",
        "deployments_idle",
    }
