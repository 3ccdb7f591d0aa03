"""A run that dies resumes from its last complete checkpoint: same steps, same data order, same adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from tests.helpers.datasets import chat_rows, read_json, write_jsonl

from ministudio_train import batching
from ministudio_train.cli import EXIT_OK, main

# 24 examples, batch 4: 6 steps an epoch, 2 epochs = 12 steps; resumable checkpoints at steps 4, 6 (epoch-1), 8, 12.
STEPS, INTERVAL = 12, 4


class Crash(BaseException):
    """A hard death mid-step: nothing in the trainer catches it, so no result.json and no final checkpoint."""


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MINISTUDIO_SAGEMAKER_ROOT", "/nonexistent-sagemaker")
    monkeypatch.delenv("MINISTUDIO_JOB_SPEC", raising=False)


def _args(model: Path, train: Path, out: Path, seed: int = 7) -> list[str]:
    return ["--model", str(model), "--training-file", str(train), "--output", str(out), "--job-id", "ftjob-resume",
            "--n-epochs", "2", "--batch-size", "4", "--validation-split", "0", "--learning-rate-multiplier", "10",
            "--checkpoint-steps", str(INTERVAL), "--log-every", "1", "--seed", str(seed)]  # fmt: skip


def _count_steps(monkeypatch: pytest.MonkeyPatch, crash_at: int | None = None) -> list[int]:
    """Count training forward passes (no validation set: every one is a step); raise Crash on number crash_at."""
    calls: list[int] = []
    real = batching.forward_loss

    def counted(model: Any, batch: batching.Batch) -> torch.Tensor:
        calls.append(1)
        if crash_at is not None and len(calls) == crash_at:
            raise Crash()
        return real(model, batch)

    monkeypatch.setattr(batching, "forward_loss", counted)
    return calls


def _metrics(out: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line["tokens_per_second"] is not None]  # the per-step lines


def _same_adapter(a: Path, b: Path) -> None:
    left, right = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    assert left.keys() == right.keys()
    for key in left:
        torch.testing.assert_close(left[key], right[key], rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def uninterrupted(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted")
    train = write_jsonl(folder / "train.jsonl", chat_rows(24))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("MINISTUDIO_SAGEMAKER_ROOT", "/nonexistent-sagemaker")
        assert main(_args(tiny_model, train, folder / "out")) == EXIT_OK
    return folder / "out"


def _crash_after_step_9(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(24))
    out = tmp_path / "out"
    with monkeypatch.context() as mp:
        _count_steps(mp, crash_at=10)
        with pytest.raises(Crash):
            main(_args(tiny_model, train, out))
    assert not (out / "result.json").exists() and read_json(out / "progress.json")["step"] == 9
    return train, out


def test_killed_run_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uninterrupted: Path
) -> None:
    # Given a run that died during step 10, after its checkpoint at step 8
    train, out = _crash_after_step_9(tiny_model, tmp_path, monkeypatch)
    assert (out / "checkpoints" / "step-8" / "COMPLETE").is_file()

    # When the trainer starts again on the same output
    steps = _count_steps(monkeypatch)
    assert main(_args(tiny_model, train, out)) == EXIT_OK

    # Then it trains only the steps after the checkpoint (1 step redone, less than the interval of 4)
    result = read_json(out / "result.json")
    outcome = (result["status"], result["steps"], result["resumed_from"], result["attempt"])
    assert outcome == ("succeeded", 12, "step-8", 2)
    assert len(steps) == STEPS - 8
    assert result["checkpoints"] == [str(out / "checkpoints" / n) for n in ("step-4", "epoch-1", "step-8", "epoch-2")]
    # and ends with the adapter an uninterrupted run of the same seed makes
    _same_adapter(out / "adapter", uninterrupted / "adapter")
    # and its loss curve goes on from the checkpoint, without a reset or a repeated step
    resumed, whole = _metrics(out), _metrics(uninterrupted)
    assert [m["step"] for m in resumed] == list(range(1, STEPS + 1))
    assert [m["loss"] for m in resumed] == pytest.approx([m["loss"] for m in whole], abs=1e-5)
    assert result["trained_tokens"] == read_json(uninterrupted / "result.json")["trained_tokens"]
    assert sorted(p.name for p in (out / "attempts").iterdir()) == ["1", "2", "latest.json"]
    assert read_json(out / "progress.json")["attempt"] == 2


def test_half_written_checkpoint_is_ignored(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uninterrupted: Path
) -> None:
    # Given a run that died while writing its step-8 checkpoint (no COMPLETE marker, state cut short)
    train, out = _crash_after_step_9(tiny_model, tmp_path, monkeypatch)
    half = out / "checkpoints" / "step-8"
    (half / "COMPLETE").unlink()
    (half / "trainer_state.pt").write_bytes(b"cut sho")
    shutil.copytree(out / "checkpoints" / "epoch-1", out / "checkpoints" / ".tmp-step-9")  # a temporary folder

    # When the trainer starts again
    steps = _count_steps(monkeypatch)
    assert main(_args(tiny_model, train, out)) == EXIT_OK

    # Then it resumed from the newest complete one (epoch-1, step 6), never from the half-written one
    result = read_json(out / "result.json")
    assert (result["steps"], result["resumed_from"]) == (12, "epoch-1") and len(steps) == STEPS - 6
    assert (half / "COMPLETE").is_file()  # rewritten whole when the resumed run passed step 8 again
    _same_adapter(out / "adapter", uninterrupted / "adapter")
    assert [m["step"] for m in _metrics(out)] == list(range(1, STEPS + 1))
    # every line, the epoch ends' too, as an uninterrupted run writes them
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    whole = [json.loads(line) for line in (uninterrupted / "metrics.jsonl").read_text().splitlines()]
    assert [(m["step"], m["epoch"]) for m in lines] == [(m["step"], m["epoch"]) for m in whole]


def test_checkpoints_of_another_run_are_not_resumed(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given checkpoints of a run with another seed under the output
    train, out = _crash_after_step_9(tiny_model, tmp_path, monkeypatch)

    # When a run with different settings starts there
    steps = _count_steps(monkeypatch)
    assert main(_args(tiny_model, train, out, seed=8)) == EXIT_OK

    # Then it starts afresh
    result = read_json(out / "result.json")
    assert (result["steps"], result["resumed_from"]) == (12, None) and len(steps) == STEPS
    assert [m["step"] for m in _metrics(out)] == list(range(1, STEPS + 1))


@pytest.mark.parametrize("value", [0, -3, 2.5, "often"])
def test_checkpoint_steps_is_checked_on_both_sides(value: Any) -> None:
    from functions.core.errors import InvalidRequest
    from functions.jobs import hyperparameters

    from ministudio_train import hyper
    from ministudio_train.errors import TrainError

    with pytest.raises(TrainError) as trainer:
        hyper.resolve({"checkpoint_steps": value})
    assert trainer.value.param == "checkpoint_steps"
    with pytest.raises(InvalidRequest) as api:
        hyperparameters.check({"checkpoint_steps": value})
    assert "checkpoint_steps" in str(api.value)
    assert hyper.resolve({}).checkpoint_steps == hyperparameters.resolve({})["checkpoint_steps"] == 250
