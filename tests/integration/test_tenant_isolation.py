"""Tenant isolation matrix: every route that takes an id, called with another tenant's key, answers 404;
every route but the open ones answers 401 without a key. Routes are enumerated from the app's OpenAPI, so a
new route that forgets the ownership check fails here without anyone adding it to a list."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.helpers.datasets import chat_lines

OPEN = {"/", "/health"}
BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
ADMIN_PREFIX = "/v1/tenants"
Headers = dict[str, str]


def _routes(client: TestClient) -> list[tuple[str, str]]:
    app: Any = client.app
    return [(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops]


def _acme_records(client: TestClient, acme: Headers, ingest: Callable[[], int]) -> dict[str, str]:
    from functions.core.models import FineTunedModel
    from functions.store.mongo import get_store

    file_id = client.post(
        "/v1/files", headers=acme, data={"purpose": "fine-tune"}, files={"file": ("a.jsonl", chat_lines())}
    ).json()["id"]
    ingest()
    job = client.post("/v1/fine_tuning/jobs", headers=acme, json={"model": BASE, "training_file": file_id})
    job_id = job.json()["id"]
    model = f"ft:{BASE}:acme::{job_id}"
    get_store().models.add(
        FineTunedModel(id=model, client_code="acme", base_model=BASE, job_id=job_id, adapter_uri="s3://b/a/")
    )
    upload_id = client.post(
        "/v1/uploads",
        headers=acme,
        json={"filename": "a.jsonl", "purpose": "fine-tune", "bytes": 10, "mime_type": "application/jsonl"},
    ).json()["id"]
    deployment_id = client.post("/v1/deployments", headers=acme, json={"model": BASE}).json()["id"]
    return {
        "file_id": file_id,
        "upload_id": upload_id,
        "deployment_id": deployment_id,
        "model_name": BASE,
        "client_code": "acme",
        "fine_tuning_job_id": job_id,
        "job_id": job_id,
        "model": model,
        "path": "info",  # a seed route on the deployment's server (/inference/{deployment_id}/{path})
    }


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"{(\w+)(?::path)?}", lambda m: values[m.group(1)], path)


def test_every_id_taking_route_hides_other_tenants_records(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    globex = make_tenant("globex")
    values = _acme_records(client, acme, ingest)
    checked = []
    for method, path in _routes(client):
        if "{" not in path or path.startswith(ADMIN_PREFIX):
            continue
        url = _fill(path, values)
        kwargs: dict[str, Any] = {"headers": globex}
        if method in ("POST", "PUT", "PATCH"):
            if "upload-dataset" in path or path.endswith("/parts"):
                kwargs["files"] = {"file": ("a.jsonl", chat_lines()), "data": ("b", chat_lines())}
            else:
                kwargs["json"] = {}
        response = client.request(method, url, **kwargs)
        assert response.status_code == 404, (method, path, response.status_code, response.text)
        checked.append((method, path))
        # The owner still sees it (so the 404 above is about ownership, not a broken route).
        if method == "GET":
            # A seed route reaches the deployment's server, which a pending deployment does not have yet: 503.
            owner = 503 if path.endswith("/{path}") else 200
            assert client.request(method, url, headers=acme).status_code == owner, (method, path)
    assert len(checked) >= 15, checked


def test_every_route_but_the_open_ones_needs_a_key(client: TestClient, make_tenant: Callable[..., Headers]) -> None:
    values = {
        "file_id": "file-x",
        "upload_id": "upload_x",
        "client_code": "acme",
        "key_id": "key_x",
        "fine_tuning_job_id": "ftjob-x",
        "job_id": "ftjob-x",
        "model": "ft:x",
        "deployment_id": "dep-x",
        "model_name": "m",
        "path": "info",
    }
    for method, path in _routes(client):
        if path in OPEN:
            continue
        response = client.request(method, _fill(path, values))
        assert response.status_code == 401, (method, path, response.status_code)
