"""SIGTERM (what Ray, Kubernetes and SageMaker send to stop a job) mid-run: a checkpoint, then `cancelled`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.helpers.datasets import chat_rows, read_json, write_jsonl


def cli_env() -> dict[str, str]:
    """Environment for a trainer subprocess: offline, quiet, without an ambient SageMaker or spec."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "MINISTUDIO_JOB_SPEC"))}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
            "MINISTUDIO_SAGEMAKER_ROOT": "/nonexistent-sagemaker-root",
        }
    )
    return env


def trainer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ministudio_train.cli", *args]


def _wait_for_step(progress: Path, proc: subprocess.Popen[bytes], timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the trainer ended before it could be stopped"
        try:
            step = json.loads(progress.read_text()).get("step") or 0
        except (OSError, ValueError):
            step = 0
        if step >= 2:
            return int(step)
        time.sleep(0.2)
    raise AssertionError("no training step was reported in time")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_saves_a_checkpoint_and_reports_cancelled(
    tiny_model: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(64))
    out = tmp_path / "out"
    # Given a run long enough (50 epochs of batch 1) that only a signal can end it during the test
    args = ["--model", str(tiny_model), "--training-file", str(train), "--output", str(out), "--n-epochs", "50",
            "--batch-size", "1", "--log-every", "1", "--validation-split", "0"]  # fmt: skip
    proc = subprocess.Popen(trainer_cmd(*args), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_step(out / "progress.json", proc)
        # When the platform stops it
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()

    # Then it exits cleanly with a checkpoint of the step it reached and result.json saying cancelled
    assert proc.returncode == 0, stderr.decode()[-2000:]
    result = read_json(out / "result.json")
    assert result["status"] == "cancelled" and sig.name in result["message"]
    assert 2 <= result["steps"] < 50 * 64
    checkpoint = out / "checkpoints" / f"step-{result['steps']}"
    assert result["checkpoints"] == [str(checkpoint)]
    assert {"adapter_model.safetensors", "adapter_config.json"} <= {p.name for p in checkpoint.iterdir()}
    assert read_json(out / "progress.json")["status"] == "cancelled"
