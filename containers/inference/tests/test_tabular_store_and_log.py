"""The pieces under the tabular routes: both stores (S3 via moto, a local directory), exclusive version claims,
the request log gaining its tenant columns on an old file, and the offline demo registering into a directory."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws

from ministudio_serve.app import create_app
from ministudio_serve.services.request_log import LogEntry, RequestLog
from ministudio_serve.settings import ServeSettings
from ministudio_serve.tabular import demo, formats
from ministudio_serve.tabular.schema import Feature, InputInvalid, validate_input
from ministudio_serve.tabular.store import BlobStore, KeyExists, LocalStore, S3Store, build_store

BUCKET = "ministudio-store-test"


@pytest.fixture
def s3_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Store]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        store = build_store(f"s3://{BUCKET}/some/prefix")
        assert isinstance(store, S3Store)
        yield store


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_store_round_trip_and_exclusive_claim(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store: BlobStore = request.getfixturevalue("s3_store") if kind == "s3" else LocalStore(tmp_path)
    store.put("tabular/t/models/a/v1/metadata.json", b"one", exclusive=True)
    store.put("tabular/t/files/x.skops", b"file")
    with pytest.raises(KeyExists):
        store.put("tabular/t/models/a/v1/metadata.json", b"two", exclusive=True)
    assert store.get("tabular/t/models/a/v1/metadata.json") == b"one"
    assert store.get("tabular/t/missing") is None
    assert store.list("tabular/t/") == ["tabular/t/files/x.skops", "tabular/t/models/a/v1/metadata.json"]
    store.delete("tabular/t/files/x.skops")
    assert store.list("tabular/t/files/") == []


def test_local_store_refuses_keys_outside_its_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="escapes"):
        LocalStore(tmp_path / "root").put("../outside", b"x")


def test_request_log_adds_tenant_columns_to_an_existing_file(tmp_path: Path) -> None:
    # Given a log file written before the tenant columns existed
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE requests (id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, route TEXT NOT NULL,"
        " model TEXT NOT NULL, adapter TEXT, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,"
        " latency_ms REAL NOT NULL, status TEXT NOT NULL, finish_reason TEXT, user TEXT, timestamp TEXT NOT NULL)"
    )
    old.execute(
        "INSERT INTO requests VALUES (1, 'r0', '/v1/completions', 'm', NULL, 1, 1, 1.0, 'success', 'stop', NULL, 't')"
    )
    old.commit()
    old.close()

    log = RequestLog(path)
    log.add(
        LogEntry("r1", "/predict", "lr:v1", None, 0, 0, 1.0, "success", tenant="acme", input_data="{}", output="{}")
    )

    assert [e["request_id"] for e in log.recent(10)] == ["r1", "r0"]
    assert [e["request_id"] for e in log.recent(10, tenant="acme")] == ["r1"]
    log.close()


def test_feature_types_are_strict_and_finite() -> None:
    features = [Feature(name="x"), Feature(name="n", type="int"), Feature(name="flag", type="bool")]
    assert validate_input("t", features, {"x": 2, "n": 3, "flag": True}) == [2.0, 3.0, 1.0]
    for bad, field in (({"x": "2", "n": 3, "flag": True}, "x"), ({"x": 1.0, "n": 1.5, "flag": True}, "n"),
                       ({"x": 1.0, "n": 1, "flag": "yes"}, "flag")):  # fmt: skip
        with pytest.raises(InputInvalid) as info:
            validate_input("t", features, bad)
        assert [e["field"] for e in info.value.errors] == [field]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"PK\x03\x04...", formats.ModelFormat.SKOPS),
        (b'{"learner": {}}', formats.ModelFormat.XGBOOST_JSON),
        (b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner", formats.ModelFormat.XGBOOST_UBJ),
    ],
)
def test_formats_are_recognised_by_their_bytes(data: bytes, expected: formats.ModelFormat) -> None:
    assert formats.detect(data) is expected


def test_demo_registers_into_a_local_directory_that_the_server_serves(tmp_path: Path, capsys: Any) -> None:
    # Given the demo run offline into a directory store
    store = tmp_path / "store"
    assert demo.main(["--store", str(store), "--tenant", "acme"]) == 0
    assert "registered xgboost v2" in capsys.readouterr().out

    # When a tabular server on that directory predicts with the active model and lists versions
    settings = ServeSettings(profile="tabular", tabular_store=str(store), request_log=tmp_path / "log.sqlite")
    with TestClient(create_app(settings)) as client:
        headers = {"X-Tenant-ID": "acme"}
        sample = next(v.sample for v in demo.train_versions() if v.model_type == "iris_xgboost")
        iris = client.post("/predict/iris_xgboost", headers=headers, json={"input_data": sample}).json()
        models = client.get("/models", headers=headers).json()

    # Then the versions and the active model are there, and iris gets one of its three labels
    assert models["active"] == {"model_type": "logistic_regression", "version": "v2"}
    assert {m["model_type"]: len(m["versions"]) for m in models["models"]} == {
        "iris_xgboost": 1,
        "logistic_regression": 2,
        "xgboost": 2,
    }
    assert iris["label"] == "setosa" and set(iris["probabilities"]) == {"0", "1", "2"}
    assert json.loads((store / "tabular/acme/active.json").read_text())["version"] == "v2"


def test_explicit_version_is_immutable(tmp_path: Path) -> None:
    lr = next(v for v in demo.train_versions() if v.model_type == "logistic_regression")
    settings = ServeSettings(profile="tabular", tabular_store=str(tmp_path / "s"), request_log=tmp_path / "l.sqlite")
    with TestClient(create_app(settings)) as client:
        form = {"metadata": json.dumps(lr.metadata), "version": "2024-06"}
        first = client.post("/models/lr/versions", files={"file": ("m", lr.data)}, data=form)
        again = client.post("/models/lr/versions", files={"file": ("m", lr.data)}, data=form)
    assert first.status_code == 201 and first.json()["version"] == "2024-06"
    assert again.status_code == 409 and again.json()["details"]["code"] == "version_exists"
