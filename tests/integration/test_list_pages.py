"""Every list the API answers is one envelope, `{object: "list", data, has_more, first_id, last_id}`: OpenAI's
schemas accept it where OpenAI defines the operation, and the official SDK pages through it with `after`."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.helpers.datasets import chat_lines
from tests.helpers.openai_schema import assert_openai

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
ENVELOPE = {"object", "data", "has_more", "first_id", "last_id"}
Headers = dict[str, str]


def test_every_list_is_one_envelope_that_the_openai_sdk_pages_through(
    client: TestClient, make_tenant: Callable[..., Headers], admin: Headers, ingest: Callable[[], int]
) -> None:
    from openai import OpenAI

    acme = make_tenant("acme")
    files = [
        client.post(
            "/v1/files", headers=acme, data={"purpose": "fine-tune"}, files={"file": (f"t{i}.jsonl", chat_lines(20))}
        ).json()["id"]
        for i in range(3)
    ]
    ingest()
    sdk = OpenAI(api_key=acme["Authorization"][7:], base_url="http://testserver/v1", http_client=client, max_retries=0)
    # Auto-pagination: one file a page, each next page asked for `after` the last id of the one before.
    assert [f.id for f in sdk.files.list(limit=1)] == files[::-1]
    job = sdk.fine_tuning.jobs.create(model=BASE, training_file=files[0])
    assert [j.id for j in sdk.fine_tuning.jobs.list(limit=1)] == [job.id]
    events = [e.message for e in sdk.fine_tuning.jobs.list_events(job.id, limit=1)]
    assert events[-1] == "Created fine-tuning job" and len(events) >= 2
    assert list(sdk.fine_tuning.jobs.checkpoints.list(job.id)) == []
    assert BASE in [m.id for m in sdk.models.list()]

    openai_lists = {
        "/v1/files": "ListFilesResponse",
        "/v1/files?purpose=nothing-here": "ListFilesResponse",  # empty: first_id and last_id are still strings
        "/v1/fine_tuning/jobs": "ListPaginatedFineTuningJobsResponse",
        f"/v1/fine_tuning/jobs/{job.id}/events": "ListFineTuningJobEventsResponse",
        f"/v1/fine_tuning/jobs/{job.id}/checkpoints": "ListFineTuningJobCheckpointsResponse",
        "/v1/models": "ListModelsResponse",
    }
    for path, schema in openai_lists.items():
        body = client.get(path, headers=acme).json()
        assert set(body) == ENVELOPE and body["object"] == "list", path
        assert_openai(schema, body)
    for path, headers in [("/v1/deployments", acme), ("/v1/logs", acme), ("/v1/tenants", admin)]:
        body = client.get(path, headers=headers).json()
        assert set(body) == ENVELOPE and body["object"] == "list", path
    keys = client.get("/v1/tenants/acme/api_keys", headers=admin).json()
    assert set(keys) == ENVELOPE and keys["first_id"] == keys["last_id"] == keys["data"][0]["id"]
