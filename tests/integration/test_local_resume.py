"""The local backend runs the real trainer; killed with SIGKILL and run again, the new attempt resumes."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.compute.base import RunState, TrainingSpec
from functions.compute.local import LocalBackend
from functions.core.settings import Settings
from tests.helpers.datasets import chat_rows, read_json, write_jsonl
from tests.helpers.tiny_models import build_model_dir

STEPS = 3 * 96  # 3 epochs of 96 examples, batch 1


def wait_for(check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.01)
    return value


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalBackend]:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MINISTUDIO_SAGEMAKER_ROOT", str(tmp_path / "no-sagemaker"))
    settings = Settings(local_run_threads=1, local_child_env_passthrough=["MINISTUDIO_SAGEMAKER_ROOT"])
    local = LocalBackend(settings, command=[sys.executable, "-m", "ministudio_train.cli"], runs_dir=tmp_path / "runs",
                         grace_seconds=5.0, poll_seconds=0.1)  # fmt: skip
    try:
        yield local
    finally:
        local.close(5.0)


def test_killed_trainer_run_again_by_the_local_backend_resumes(backend: LocalBackend, tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    hyperparameters = {"n_epochs": 3, "batch_size": 1, "validation_split": 0, "checkpoint_steps": 20}
    spec = TrainingSpec(job_id="ftjob-localresume", tenant="acme", model=str(build_model_dir(tmp_path / "model")),
                        training_file=str(write_jsonl(tmp_path / "train.jsonl", chat_rows(96))), output=str(out),
                        hyperparameters=hyperparameters)  # fmt: skip
    # Given a trainer killed (SIGKILL: no chance to write anything) once it has a complete checkpoint
    status = backend.submit("ftjob-localresume", spec)
    wait_for(lambda: list((out / "checkpoints").glob("*/COMPLETE")), timeout=120)
    os.kill(int(status.backend_id or 0), signal.SIGKILL)
    wait_for(lambda: backend.status("ftjob-localresume").state is RunState.failed, timeout=30)
    assert not (out / "result.json").exists(), "the run ended before it could be killed"
    killed_at = read_json(out / "progress.json")["step"]

    # When the backend runs the job's trainer again (a new attempt)
    backend.retry("ftjob-localresume")
    wait_for(lambda: backend.status("ftjob-localresume").state is RunState.succeeded, timeout=180)

    # Then the attempt went on from the newest checkpoint: less than one interval (20 steps) redone
    result = read_json(out / "result.json")
    assert (result["status"], result["steps"], result["attempt"]) == ("succeeded", STEPS, 2)
    resumed_at = read_json(out / "checkpoints" / result["resumed_from"] / "trainer_state.json")["step"]
    assert 0 < resumed_at <= killed_at < resumed_at + 20
    # and the loss curve continues: every step once, in order
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if line["tokens_per_second"] is not None] == list(range(1, STEPS + 1))
    assert sorted(p.name for p in (out / "attempts").iterdir()) == ["1", "2", "latest.json"]
    assert json.loads((tmp_path / "runs" / "ftjob-localresume" / "state.json").read_text())["attempt"] == 2
