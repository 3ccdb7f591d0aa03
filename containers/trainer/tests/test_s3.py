"""S3 in and out against moto's server: the dataset from s3://, every output under the job's artifacts prefix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from functions.local.procs import free_port
from tests.helpers.datasets import chat_rows, write_jsonl

from ministudio_train.cli import EXIT_FAILED, EXIT_OK, main
from ministudio_train.outputs import Outputs

BUCKET = "ministudio-test"
PREFIX = "artifacts/acme/ftjob-s3test/"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    import boto3

    for key, value in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "HF_HUB_OFFLINE": "1", "MINISTUDIO_SAGEMAKER_ROOT": "/nonexistent"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3")
    if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=BUCKET)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    return client


class _Recorder:
    """Wraps the boto3 client to record the order objects are written in."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.keys: list[str] = []

    def __getattr__(self, name: str) -> Any:  # reads, lists and deletes go straight through
        return getattr(self.client, name)

    def put_object(self, **kwargs: Any) -> Any:
        self.keys.append(kwargs["Key"])
        return self.client.put_object(**kwargs)

    def upload_file(self, filename: str, bucket: str, key: str) -> Any:
        self.keys.append(key)
        return self.client.upload_file(filename, bucket, key)


class _NoListing(_Recorder):
    def get_paginator(self, name: str) -> Any:
        raise AssertionError(f"the trainer may not list the bucket ({name})")

    def list_objects_v2(self, **kwargs: Any) -> Any:
        raise AssertionError("the trainer may not list the bucket")


def test_s3_dataset_in_and_artifacts_out(tiny_model: Path, tmp_path: Path, s3: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    dataset = write_jsonl(tmp_path / "train.jsonl", chat_rows(12))
    s3.upload_file(str(dataset), BUCKET, "datasets/acme/file-x/train.jsonl")
    recorder = _Recorder(s3)
    monkeypatch.setattr(Outputs, "_client", lambda self: recorder)
    spec = {"job_id": "ftjob-s3test", "tenant": "acme", "model": str(tiny_model), "suffix": "s3",
            "training_file": f"s3://{BUCKET}/datasets/acme/file-x/train.jsonl",
            "hyperparameters": {"n_epochs": 2, "batch_size": 4, "validation_split": 0.2},
            "output": f"s3://{BUCKET}/{PREFIX}"}  # fmt: skip

    assert main(["--spec-json", json.dumps(spec), "--log-every", "1"]) == EXIT_OK

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)["Contents"]}
    for name in ("progress.json", "metrics.jsonl", "result.json", "adapter/adapter_model.safetensors",
                 "adapter/adapter_config.json", "adapter/tokenizer.json", "checkpoints/epoch-1/adapter_config.json",
                 "checkpoints/epoch-2/adapter_model.safetensors"):  # fmt: skip
        assert PREFIX + name in keys
    assert recorder.keys[-1] == PREFIX + "result.json" and recorder.keys.count(PREFIX + "result.json") == 1
    result = json.loads(s3.get_object(Bucket=BUCKET, Key=PREFIX + "result.json")["Body"].read())
    assert result["status"] == "succeeded"
    assert result["adapter_uri"] == f"s3://{BUCKET}/{PREFIX}adapter/"
    assert result["checkpoints"] == [f"s3://{BUCKET}/{PREFIX}checkpoints/epoch-{n}/" for n in (1, 2)]
    metrics = s3.get_object(Bucket=BUCKET, Key=PREFIX + "metrics.jsonl")["Body"].read().decode().splitlines()
    assert [json.loads(line)["step"] for line in metrics][:3] == [1, 2, 3]  # the final flush sends every line
    progress = json.loads(s3.get_object(Bucket=BUCKET, Key=PREFIX + "progress.json")["Body"].read())
    assert progress["status"] == "succeeded"


def test_missing_s3_dataset_fails_into_s3_result(tiny_model: Path, s3: Any) -> None:
    args = ["--model", str(tiny_model), "--training-file", f"s3://{BUCKET}/datasets/acme/missing.jsonl",
            "--output", f"s3://{BUCKET}/{PREFIX}"]  # fmt: skip

    assert main(args) == EXIT_FAILED

    result = json.loads(s3.get_object(Bucket=BUCKET, Key=PREFIX + "result.json")["Body"].read())
    assert result["status"] == "failed" and result["error"]["code"] == "invalid_training_file"
    assert "missing.jsonl" in result["error"]["message"]


def test_progress_puts_are_throttled_but_never_lost(tmp_path: Path, s3: Any) -> None:
    now = [0.0]
    out = Outputs(f"s3://{BUCKET}/{PREFIX}", tmp_path, min_interval=5.0, clock=lambda: now[0])

    for step in range(1, 11):  # ten logging steps, one second apart
        out.progress({"status": "running", "step": step}, {"step": step})
        now[0] += 1.0

    # Given 10 steps in 10 s with a 5 s interval, only the 1st and 6th steps reach S3 (2 objects each)...
    assert out.puts == 4
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=PREFIX + "progress.json")["Body"].read())
    assert stored["step"] == 6
    # ...and result.json flushes the rest before it is written.
    out.result({"status": "succeeded"})
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=PREFIX + "progress.json")["Body"].read())
    metrics = s3.get_object(Bucket=BUCKET, Key=PREFIX + "metrics.jsonl")["Body"].read().decode().splitlines()
    assert stored["step"] == 10 and len(metrics) == 10 and out.puts == 7


def test_crashed_s3_run_resumes_from_the_checkpoint_whose_marker_was_written_last(
    tiny_model: Path, tmp_path: Path, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ministudio_train import batching

    dataset = write_jsonl(tmp_path / "train.jsonl", chat_rows(24))
    s3.upload_file(str(dataset), BUCKET, "datasets/acme/file-x/train.jsonl")
    recorder = _NoListing(s3)  # the trainer's role has GetObject and PutObject on its prefix, not ListBucket
    monkeypatch.setattr(Outputs, "_client", lambda self: recorder)
    spec = {"job_id": "ftjob-s3test", "tenant": "acme", "model": str(tiny_model),
            "training_file": f"s3://{BUCKET}/datasets/acme/file-x/train.jsonl",
            "hyperparameters": {"n_epochs": 2, "batch_size": 4, "validation_split": 0, "checkpoint_steps": 4},
            "output": f"s3://{BUCKET}/{PREFIX}"}  # fmt: skip
    # A stale result.json of an earlier attempt must not survive a new one's start
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "result.json", Body=b'{"status": "failed"}')
    real, calls = batching.forward_loss, []

    def dies_in_step_10(model: Any, batch: Any) -> Any:
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt  # no handler of the trainer catches it: a hard death, nothing more written
        return real(model, batch)

    # Given a run that died in step 10 (each staging folder is gone with its process)
    with monkeypatch.context() as mp:
        mp.setattr(batching, "forward_loss", dies_in_step_10)
        with pytest.raises(KeyboardInterrupt):
            main(["--spec-json", json.dumps(spec)])
    keys = [k.removeprefix(PREFIX) for k in recorder.keys]
    assert "result.json" not in {o["Key"].removeprefix(PREFIX) for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    for name in ("step-4", "epoch-1", "step-8"):  # every checkpoint's marker is its last object
        written = [k for k in keys if k.startswith(f"checkpoints/{name}/")]
        assert written[-1] == f"checkpoints/{name}/COMPLETE" and len(written) > 3
    # and a half-written newer one: its objects without the marker (even if an index named it)
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "checkpoints/step-9/trainer_state.json", Body=b"{}")
    index = json.loads(s3.get_object(Bucket=BUCKET, Key=PREFIX + "checkpoints/index.json")["Body"].read())
    assert sorted(index) == ["epoch-1", "step-4", "step-8"]
    index["step-9"] = {**index["step-8"], "step": 9}
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "checkpoints/index.json", Body=json.dumps(index).encode())

    # When the trainer starts again
    assert main(["--spec-json", json.dumps(spec)]) == EXIT_OK

    # Then it went on from step 8, attempt 2
    result = json.loads(s3.get_object(Bucket=BUCKET, Key=PREFIX + "result.json")["Body"].read())
    outcome = (result["status"], result["steps"], result["resumed_from"], result["attempt"])
    assert outcome == ("succeeded", 12, "step-8", 2)
    metrics = s3.get_object(Bucket=BUCKET, Key=PREFIX + "metrics.jsonl")["Body"].read().decode().splitlines()
    assert [json.loads(line)["step"] for line in metrics if json.loads(line)["tokens_per_second"]] == list(range(1, 13))
