"""Model references and S3 URIs: local dirs, missing models, and a model directory round-tripped through moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ministudio_common import loader, s3uri

from functions.local.procs import free_port


def _fake_model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (path / "model.safetensors").write_bytes(b"\0" * 16)
    (path / "sub").mkdir()
    (path / "sub" / "nested.txt").write_text("x")
    return path


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       loader.CACHE_ENV: str(tmp_path / "cache")}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket="models")
    try:
        yield client
    finally:
        server.stop()


def test_split_and_is_s3() -> None:
    assert s3uri.split("s3://bucket/a/b.jsonl") == ("bucket", "a/b.jsonl")
    assert s3uri.is_s3("s3://b/k") and not s3uri.is_s3("models/x")
    with pytest.raises(ValueError, match="not an s3"):
        s3uri.split("https://bucket/key")


def test_local_model_dir_resolves_to_itself(tmp_path: Path) -> None:
    model = _fake_model_dir(tmp_path / "m")
    assert loader.resolve(str(model)) == model


def test_unknown_reference_is_model_not_found_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(loader.ModelNotFound, match="not available offline"):
        loader.resolve("someone/some-model")
    with pytest.raises(loader.ModelNotFound):
        loader.resolve(str(tmp_path / "missing-dir"))


def test_model_dir_round_trips_through_s3_and_is_cached(s3: Any, tmp_path: Path) -> None:
    keys = s3uri.upload_dir(_fake_model_dir(tmp_path / "m"), "s3://models/base/llama")

    assert sorted(keys) == ["base/llama/config.json", "base/llama/model.safetensors", "base/llama/sub/nested.txt"]
    local = loader.resolve("s3://models/base/llama/")
    assert (local / "sub" / "nested.txt").read_text() == "x"
    s3.delete_object(Bucket="models", Key="base/llama/config.json")
    assert loader.resolve("s3://models/base/llama") == local  # the cached copy, not a second download


def test_s3_prefix_without_a_model_is_not_found(s3: Any, tmp_path: Path) -> None:
    s3uri.upload_bytes(b"{}", "s3://models/empty/readme.json")
    with pytest.raises(loader.ModelNotFound, match=r"no config\.json"):
        loader.resolve("s3://models/empty/")
    with pytest.raises(FileNotFoundError, match="nothing under"):
        s3uri.download("s3://models/nothing/", tmp_path / "never")
