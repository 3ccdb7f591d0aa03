"""Seed 004's classical-model routes (profile `tabular`) against S3 (moto, in-process): register versions by upload,
predict with the active model, a type's active version and an exact version, the seed's error shape for bad input,
tenants kept apart, /logs?n_limit= and /delete-models keeping metadata."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import skops.io as sio
from fastapi.testclient import TestClient
from httpx import Response
from moto import mock_aws

from ministudio_serve.app import create_app
from ministudio_serve.settings import ServeSettings
from ministudio_serve.tabular.demo import TrainedVersion, train_versions

BUCKET = "ministudio-tabular-test"
PREFIX = "serve"
KEY = "server-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SEED_ERROR_KEYS = {"error", "message", "details", "timestamp", "request_id"}


@pytest.fixture(scope="module")
def trained() -> dict[str, list[TrainedVersion]]:
    by_type: dict[str, list[TrainedVersion]] = {}
    for version in train_versions():
        by_type.setdefault(version.model_type, []).append(version)
    return by_type


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def client(s3: Any, tmp_path: Path) -> Iterator[TestClient]:
    settings = ServeSettings(
        profile="tabular",
        tabular_store=f"s3://{BUCKET}/{PREFIX}",
        request_log=tmp_path / "log.sqlite",
        api_key=KEY,
        redis_url=None,  # not whatever REDIS_URL another test left in the environment: this client has no cache
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def upload(client: TestClient, v: TrainedVersion, tenant: str | None = None, **form: Any) -> Response:
    headers = {**AUTH, **({"X-Tenant-ID": tenant} if tenant else {})}
    data = {"metadata": json.dumps(v.metadata), **{k: str(x).lower() for k, x in form.items()}}
    return client.post(f"/models/{v.model_type}/versions", headers=headers, files={"file": ("m", v.data)}, data=data)


def assert_seed_error(response: Response, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.status_code == status, body
    assert set(body) == SEED_ERROR_KEYS
    assert body["request_id"] == response.headers["x-request-id"]
    assert isinstance(body["details"], dict)
    if code:
        assert body["details"]["code"] == code
    return body


def s3_keys(s3: Any, under: str) -> list[str]:
    found = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{under}").get("Contents", [])
    return [o["Key"][len(PREFIX) + 1 :] for o in found]


def test_seed_routes_predict_with_active_model_type_and_version(client: TestClient, trained: dict) -> None:
    # Given two logistic regression versions and an XGBoost version, uploaded; v2 activated as the active model
    lr1, lr2 = trained["logistic_regression"]
    xgb1 = trained["xgboost"][0]
    assert upload(client, lr1).json()["version"] == "v1"
    assert upload(client, xgb1).json()["format"] == "xgboost-json"
    registered = upload(client, lr2, activate=True)
    assert registered.status_code == 201
    meta = registered.json()
    assert meta["version"] == "v2" and meta["framework"] == "scikit-learn" and meta["n_features"] == 30
    assert meta["features"][0] == {"name": "mean radius", "type": "float"} and meta["metrics"]["accuracy"] > 0.9
    assert meta["created_at"].endswith("Z")
    sample = {"input_data": lr1.sample}

    # When each of seed 004's predict routes is called
    active = client.post("/predict", headers=AUTH, json=sample)
    by_type = client.post("/predict/xgboost", headers=AUTH, json=sample)
    by_version = client.post("/predict/logistic_regression/v1", headers=AUTH, json=sample)

    # Then each answers with its version's prediction, as the model itself predicts it
    expected_v1 = sio.loads(lr1.data).predict_proba(np.array([list(lr1.sample.values())]))[0]
    assert active.status_code == 200, active.json()
    assert (active.json()["model_type"], active.json()["version"]) == ("logistic_regression", "v2")
    assert (by_type.json()["model_type"], by_type.json()["version"]) == ("xgboost", "v1")
    body = by_version.json()
    assert body["version"] == "v1" and body["prediction"] == int(np.argmax(expected_v1))
    assert body["label"] == lr1.metadata["target_names"][body["prediction"]]
    assert body["probabilities"]["1"] == pytest.approx(expected_v1[1], abs=1e-5)
    assert body["cached"] is False and body["request_id"] == by_version.headers["x-request-id"]
    listing = client.get("/models", headers=AUTH).json()
    assert listing["active"] == {"model_type": "logistic_regression", "version": "v2"}
    assert [(m["model_type"], m["active_version"], len(m["versions"])) for m in listing["models"]] == [
        ("logistic_regression", "v2", 2),
        ("xgboost", "v1", 1),
    ]


def test_set_active_switches_the_model_behind_predict(client: TestClient, trained: dict) -> None:
    for v in (*trained["logistic_regression"], *trained["xgboost"]):
        assert upload(client, v).status_code == 201
    sample = {"input_data": trained["xgboost"][0].sample}

    assert (
        client.put("/models/active", headers=AUTH, json={"model_type": "xgboost", "version": "v1"}).status_code == 200
    )
    assert client.post("/predict", headers=AUTH, json=sample).json()["version"] == "v1"
    moved = client.put("/models/xgboost/active", headers=AUTH, json={"version": "v2"})
    assert moved.json() == {"model_type": "xgboost", "active_version": "v2"}
    assert client.post("/predict/xgboost", headers=AUTH, json=sample).json()["version"] == "v2"
    assert client.post("/predict", headers=AUTH, json=sample).json()["version"] == "v1"  # the tenant's pointer stays
    assert client.get("/models/xgboost/v2", headers=AUTH).json()["format"] == "xgboost-ubj"


def test_api_key_is_accepted_in_the_body_or_query_and_a_wrong_one_refused(client: TestClient, trained: dict) -> None:
    lr = trained["logistic_regression"][0]
    upload(client, lr, activate=True)
    assert client.post("/predict", json={"input_data": lr.sample, "api_key": KEY}).status_code == 200
    assert client.get("/logs", params={"n_limit": 1, "api_key": KEY}).status_code == 200
    assert_seed_error(
        client.post("/predict", json={"input_data": lr.sample, "api_key": "wrong"}), 401, "invalid_api_key"
    )
    assert_seed_error(client.post("/predict", json={"input_data": lr.sample}), 401, "invalid_api_key")
    assert_seed_error(client.delete("/delete-models", params={"api_key": "wrong"}), 401, "invalid_api_key")


def test_unknown_model_type_version_and_missing_active_model_are_404(client: TestClient, trained: dict) -> None:
    lr = trained["logistic_regression"][0]
    sample = {"input_data": lr.sample}
    assert_seed_error(client.post("/predict", headers=AUTH, json=sample), 404, "no_active_model")
    upload(client, lr)
    body = assert_seed_error(client.post("/predict/random_forest", headers=AUTH, json=sample), 404, "model_not_found")
    assert "random_forest" in body["message"] and "logistic_regression" in body["message"]
    body = assert_seed_error(
        client.post("/predict/logistic_regression/v7", headers=AUTH, json=sample), 404, "version_not_found"
    )
    assert "v7" in body["message"] and "v1" in body["message"]
    assert_seed_error(client.get("/models/random_forest", headers=AUTH), 404, "model_not_found")


@pytest.mark.parametrize(
    ("change", "feature", "fragment"),
    [
        ({"mean radius": None}, "mean radius", "missing feature"),
        ({"worst area": "large"}, "worst area", "valid number"),
        ({"mean texture": True}, "mean texture", "valid number"),
        ({"tumour size": 3.0}, "tumour size", "unknown feature"),
    ],
)
def test_missing_or_wrong_typed_feature_is_422_naming_it(
    client: TestClient, trained: dict, change: dict[str, Any], feature: str, fragment: str
) -> None:
    lr = trained["logistic_regression"][0]
    upload(client, lr, activate=True)
    data = {**lr.sample, **change}
    data = {k: v for k, v in data.items() if v is not None}

    response = client.post("/predict", headers=AUTH, json={"input_data": data})

    body = assert_seed_error(response, 422, "invalid_input")
    assert body["message"].startswith(f"input_data.{feature}: ") and fragment in body["message"]
    errors = body["details"]["errors"]
    assert [e["field"] for e in errors] == [feature] and fragment in errors[0]["message"]


def test_input_data_that_is_not_an_object_is_a_seed_error(client: TestClient, trained: dict) -> None:
    upload(client, trained["logistic_regression"][0], activate=True)
    body = assert_seed_error(client.post("/predict", headers=AUTH, json={"input_data": [1, 2]}), 400, "")
    assert "input_data" in body["message"]


def test_tenants_see_only_their_own_models_logs_and_deletes(client: TestClient, s3: Any, trained: dict) -> None:
    lr = trained["logistic_regression"][0]
    upload(client, lr, tenant="acme", activate=True)
    sample = {"input_data": lr.sample}
    acme = {**AUTH, "X-Tenant-ID": "acme"}
    globex = {**AUTH, "X-Tenant-ID": "globex"}
    assert client.post("/predict", headers=acme, json=sample).status_code == 200

    assert_seed_error(
        client.post("/predict/logistic_regression/v1", headers=globex, json=sample), 404, "model_not_found"
    )
    assert client.get("/models", headers=globex).json()["models"] == []
    globex_logs = client.get("/logs", headers=globex).json()["logs"]
    assert [(e["tenant"], e["status"]) for e in globex_logs] == [("globex", "model_not_found")]  # its own refusal only
    client.delete("/delete-models", headers=globex)
    assert client.post("/predict", headers=acme, json=sample).status_code == 200
    assert s3_keys(s3, "tabular/acme/files/") and not s3_keys(s3, "tabular/globex/")
    assert_seed_error(client.get("/models", headers={**AUTH, "X-Tenant-ID": "Not A Tenant"}), 400, "invalid_tenant")


def test_logs_return_the_latest_n_predictions_of_the_tenant(client: TestClient, trained: dict) -> None:
    lr = trained["logistic_regression"][0]
    upload(client, lr, activate=True)
    upload(client, lr, tenant="acme", activate=True)
    inputs = [{**lr.sample, "mean radius": r} for r in (10.0, 11.0, 12.0)]
    for data in inputs:
        client.post("/predict/logistic_regression", headers={**AUTH, "X-User-ID": "u-7"}, json={"input_data": data})
    client.post("/predict", headers={**AUTH, "X-Tenant-ID": "acme"}, json={"input_data": lr.sample})

    logs = client.get("/logs", headers=AUTH, params={"n_limit": 2}).json()

    assert logs["count"] == 2
    assert [e["input_data"]["mean radius"] for e in logs["logs"]] == [12.0, 11.0]  # newest first
    entry = logs["logs"][0]
    assert entry["tenant"] == "default" and entry["user"] == "u-7" and entry["status"] == "success"
    assert entry["route"] == "/predict/{model_type}" and entry["model"] == "logistic_regression:v1"
    assert entry["output"]["prediction"] in (0, 1) and entry["output"]["cached"] is False
    assert_seed_error(client.get("/logs", headers=AUTH, params={"n_limit": 0}), 400, "")


def test_delete_models_removes_files_and_keeps_metadata(client: TestClient, s3: Any, trained: dict) -> None:
    for v in (*trained["logistic_regression"], trained["xgboost"][0]):
        upload(client, v, activate=True)
    assert len(s3_keys(s3, "tabular/default/files/")) == 3

    deleted = client.delete("/delete-models", headers=AUTH)

    assert deleted.status_code == 200
    assert deleted.json()["files_deleted"] == 3 and deleted.json()["versions_marked"] == 3
    assert s3_keys(s3, "tabular/default/files/") == []
    assert len([k for k in s3_keys(s3, "tabular/default/models/") if k.endswith("metadata.json")]) == 3
    listing = client.get("/models", headers=AUTH).json()
    versions = [v for m in listing["models"] for v in m["versions"]]
    assert len(versions) == 3 and all(v["file_deleted_at"] and v["metrics"] and v["features"] for v in versions)
    sample = {"input_data": trained["xgboost"][0].sample}
    assert_seed_error(client.post("/predict", headers=AUTH, json=sample), 410, "model_file_deleted")


def test_probes_answer_without_the_key(client: TestClient) -> None:
    assert client.get("/").json()["status"] == "ok"
    health = client.get("/health").json()
    assert (
        health["status"] == "healthy"
        and health["store"] == f"s3://{BUCKET}/{PREFIX}/"
        and health["cache"] == "disabled"
    )
    assert client.get("/ready").json() == {"ready": True}
    assert client.get("/ping").status_code == 200
    assert client.get("/docs").status_code == 200 and client.get("/redoc").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/predict/{model_type}", "/predict/{model_type}/{version}", "/logs", "/delete-models"} <= set(
        paths
    )
