"""Seed 004's prediction cache against a real redis-server: a repeated prediction is served from Redis, keyed on
tenant, model type, version and the canonical input; a Redis that is down means uncached answers, never errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from functions.local.procs import free_port

from ministudio_serve.app import create_app
from ministudio_serve.settings import ServeSettings
from ministudio_serve.tabular.demo import TrainedVersion, train_versions

KEY = "server-key"
ACME = {"Authorization": f"Bearer {KEY}", "X-Tenant-ID": "acme"}
GLOBEX = {"Authorization": f"Bearer {KEY}", "X-Tenant-ID": "globex"}


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    binary = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if Path(p).exists()), None
    )
    if binary is None:
        pytest.skip("redis-server is not installed (make install installs it)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*argv, "--dir", tempfile.gettempdir()], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def versions() -> list[TrainedVersion]:
    return [v for v in train_versions() if v.model_type == "logistic_regression"]


def make_client(tmp_path: Path, redis_url: str | None, versions: list[TrainedVersion]) -> TestClient:
    settings = ServeSettings(
        profile="tabular",
        tabular_store=str(tmp_path / "store"),
        request_log=tmp_path / "log.sqlite",
        api_key=KEY,
        redis_url=redis_url,
    )
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    for headers in (ACME, GLOBEX):
        for v in versions:
            files = {"file": ("m", v.data)}
            form = {"metadata": json.dumps(v.metadata), "activate": "true"}
            assert client.post(f"/models/{v.model_type}/versions", headers=headers, files=files, data=form).is_success
    return client


@pytest.fixture
def cached_client(tmp_path: Path, redis_url: str, versions: list[TrainedVersion]) -> Iterator[TestClient]:
    redis.Redis.from_url(redis_url).flushdb()
    with make_client(tmp_path, redis_url, versions) as client:
        yield client


def predict(client: TestClient, headers: dict[str, str], data: dict[str, Any], path: str = "/predict") -> Any:
    response = client.post(path, headers=headers, json={"input_data": data})
    assert response.status_code == 200, response.json()
    return response.json()


def test_repeat_prediction_is_served_from_redis(
    cached_client: TestClient, redis_url: str, versions: list[TrainedVersion]
) -> None:
    r = redis.Redis.from_url(redis_url)
    sample = versions[0].sample
    # Given a first prediction, computed and stored under the tenant, type, version and input
    first = predict(cached_client, ACME, sample)
    assert first["cached"] is False
    keys = [k.decode() for k in r.keys("ministudio:tabular:pred:*")]
    assert len(keys) == 1 and keys[0].startswith("ministudio:tabular:pred:acme:logistic_regression:v2:")
    assert 0 < r.ttl(keys[0]) <= 3600

    # When the same input comes again, keys reordered and a whole number sent as an int
    reordered = dict(reversed(list(sample.items())))
    reordered["mean area"] = (
        int(sample["mean area"]) if float(sample["mean area"]).is_integer() else sample["mean area"]
    )
    r.set(keys[0], json.dumps({**json.loads(r.get(keys[0]) or b"{}"), "label": "from-redis"}))
    second = predict(cached_client, ACME, reordered)

    # Then the answer is Redis's (the doctored label proves it), marked cached, and logged as such
    assert second["cached"] is True and second["label"] == "from-redis"
    assert second["prediction"] == first["prediction"] and second["probabilities"] == first["probabilities"]
    log = cached_client.get("/logs", headers=ACME, params={"n_limit": 1}).json()["logs"][0]
    assert log["output"]["cached"] is True and log["status"] == "success"


def test_cache_keys_differ_by_tenant_version_and_input(
    cached_client: TestClient, redis_url: str, versions: list[TrainedVersion]
) -> None:
    sample = versions[0].sample
    assert predict(cached_client, ACME, sample)["cached"] is False
    assert predict(cached_client, GLOBEX, sample)["cached"] is False
    assert predict(cached_client, ACME, sample, "/predict/logistic_regression/v1")["cached"] is False
    assert predict(cached_client, ACME, {**sample, "mean radius": 99.0})["cached"] is False
    assert predict(cached_client, ACME, sample, "/predict/logistic_regression")["cached"] is True  # v2 is its active
    assert len(redis.Redis.from_url(redis_url).keys("ministudio:tabular:pred:*")) == 4


def test_delete_models_drops_the_tenants_cached_predictions(
    cached_client: TestClient, redis_url: str, versions: list[TrainedVersion]
) -> None:
    sample = versions[0].sample
    predict(cached_client, ACME, sample)
    predict(cached_client, GLOBEX, sample)

    assert cached_client.delete("/delete-models", headers=ACME).json()["cached_predictions_dropped"] == 1

    r = redis.Redis.from_url(redis_url)
    assert [k.decode().split(":")[3] for k in r.keys("ministudio:tabular:pred:*")] == ["globex"]
    assert cached_client.post("/predict", headers=ACME, json={"input_data": sample}).status_code == 410


def test_redis_down_means_uncached_answers(tmp_path: Path, versions: list[TrainedVersion]) -> None:
    # Given a server whose REDIS_URL points at a port where nothing listens
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with make_client(tmp_path, dead, versions) as client:
        answers = [predict(client, ACME, versions[0].sample) for _ in range(3)]
        # Then every prediction is answered, uncached, and /health says why
        assert [a["cached"] for a in answers] == [False] * 3
        assert client.get("/health").json()["cache"] == "unavailable"


def test_health_reports_a_connected_cache(cached_client: TestClient) -> None:
    assert cached_client.get("/health").json()["cache"] == "connected"
