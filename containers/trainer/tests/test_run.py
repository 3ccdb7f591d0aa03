"""Whole runs of the CLI in-process on a tiny random Llama: outputs, learning, and failures as result.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.helpers.datasets import chat_rows, read_json, write_jsonl

from ministudio_train import batching
from ministudio_train.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main

ADAPTER_FILES = {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MINISTUDIO_SAGEMAKER_ROOT", str(Path("/nonexistent-sagemaker")))
    monkeypatch.delenv("MINISTUDIO_JOB_SPEC", raising=False)


def _args(model: Path, train: Path, out: Path, *extra: str) -> list[str]:
    return ["--model", str(model), "--training-file", str(train), "--output", str(out), "--job-id", "ftjob-test",
            "--tenant", "acme", "--suffix", "colours", *extra]  # fmt: skip


def test_run_writes_every_output_and_the_loss_goes_down(tiny_model: Path, tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(48))
    out = tmp_path / "out"

    code = main(_args(tiny_model, train, out, "--n-epochs", "4", "--batch-size", "4", "--learning-rate-multiplier",
                      "10", "--prompt-loss-weight", "0", "--validation-split", "0.1", "--log-every", "1"))  # fmt: skip

    assert code == EXIT_OK
    result = read_json(out / "result.json")
    assert result["status"] == "succeeded" and result["steps"] == 4 * 11 and result["epochs"] == 4
    assert result["fine_tuned_model"] == f"ft:{tiny_model}:acme:colours:ftjob-test"
    assert result["adapter_uri"] == str(out / "adapter") and result["trained_tokens"] > 0
    assert result["checkpoints"] == [str(out / "checkpoints" / f"epoch-{n}") for n in range(1, 5)]
    for folder in (out / "adapter", *(Path(c) for c in result["checkpoints"])):
        assert {p.name for p in folder.iterdir()} >= ADAPTER_FILES
    adapter_config = read_json(out / "adapter" / "adapter_config.json")
    assert adapter_config["r"] == 8
    assert set(adapter_config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert adapter_config["base_model_name_or_path"] == str(tiny_model)
    written_last = (out / "result.json").stat().st_mtime_ns
    assert written_last >= (out / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns

    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if line["tokens_per_second"] is not None]
    assert [line["step"] for line in steps] == list(range(1, 45))
    first, last = sum(s["loss"] for s in steps[:4]) / 4, sum(s["loss"] for s in steps[-4:]) / 4
    assert last < first - 0.1, (first, last)
    evals = [line["eval_loss"] for line in lines if line["eval_loss"] is not None]
    assert evals[-1] < evals[0]
    # transformers' linear schedule (the rate logged after each step): warmup over int(3% of 44) = 1 step, then
    # down to 0 at the last step.
    peak = 10 * 2e-4
    rates = {line["step"]: line["learning_rate"] for line in steps}
    assert rates[1] == pytest.approx(peak) and rates[2] == pytest.approx(peak * 42 / 43)
    assert rates[23] == pytest.approx(peak * 21 / 43) and rates[44] == pytest.approx(0.0)
    progress = read_json(out / "progress.json")
    assert (progress["status"], progress["step"], progress["total_steps"], progress["eta_seconds"]) == (
        "succeeded",
        44,
        44,
        None,
    )


def test_validation_file_is_scored_each_epoch(tiny_model: Path, tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(8))
    valid = write_jsonl(tmp_path / "valid.jsonl", chat_rows(3, seed=9))
    out = tmp_path / "out"

    code = main(_args(tiny_model, train, out, "--validation-file", str(valid), "--n-epochs", "2", "--batch-size", "8"))

    assert code == EXIT_OK
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epoch_ends = {line["epoch"]: line["eval_loss"] for line in lines if line["eval_loss"] is not None}
    assert set(epoch_ends) == {1, 2}
    result = read_json(out / "result.json")
    assert result["eval_loss"] == epoch_ends[2] and result["steps"] == 2  # all 8 examples train, one step each


def _failed(out: Path) -> dict[str, Any]:
    result = read_json(out / "result.json")
    assert result["status"] == "failed"
    return dict(result["error"])


def test_corrupt_dataset_fails_naming_the_line(tiny_model: Path, tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", [*chat_rows(3), '{"messages": [}', *chat_rows(1)])

    assert main(_args(tiny_model, train, tmp_path / "out")) == EXIT_FAILED
    assert not (tmp_path / "out" / "progress.json").exists()  # it never started: result.json alone says so

    error = _failed(tmp_path / "out")
    assert (error["code"], error["param"]) == ("invalid_training_file", "training_file")
    assert "line 4 of train.jsonl" in error["message"]


def test_missing_model_fails_with_model_not_found(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(4))

    assert main(_args(tmp_path / "no-such-model", train, tmp_path / "out")) == EXIT_FAILED

    error = _failed(tmp_path / "out")
    assert (error["code"], error["param"]) == ("model_not_found", "model")


def test_impossible_batch_size_fails_naming_it(tiny_model: Path, tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(5))

    code = main(_args(tiny_model, train, tmp_path / "out", "--batch-size", "64", "--validation-split", "0"))

    assert code == EXIT_FAILED
    error = _failed(tmp_path / "out")
    assert (error["code"], error["param"]) == ("invalid_hyperparameters", "batch_size")
    assert "5 training examples" in error["message"]


def test_out_of_memory_suggests_a_smaller_batch(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real OOM would take this shared machine down with it: the allocator's error is raised where it would be.
    def exhausted(model: Any, batch: batching.Batch) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(batching, "forward_loss", exhausted)
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(8))

    assert main(_args(tiny_model, train, tmp_path / "out", "--batch-size", "8", "--validation-split", "0")) == 1

    error = _failed(tmp_path / "out")
    assert (error["code"], error["param"]) == ("out_of_memory", "batch_size")
    assert "smaller batch_size (e.g. 4)" in error["message"]


def test_cpu_allocator_failure_is_out_of_memory_too(tiny_model: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    def exhausted(model: Any, batch: batching.Batch) -> torch.Tensor:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(batching, "forward_loss", exhausted)
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(4))

    assert main(_args(tiny_model, train, tmp_path / "out", "--validation-split", "0")) == EXIT_FAILED
    assert _failed(tmp_path / "out")["code"] == "out_of_memory"


def test_bad_hyperparameter_fails_before_loading_anything(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(4))

    code = main(_args(tmp_path / "never-loaded", train, tmp_path / "out", "--learning-rate-multiplier", "lots"))

    assert code == EXIT_FAILED
    assert _failed(tmp_path / "out")["param"] == "learning_rate_multiplier"


def test_spec_with_nowhere_to_report_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "m", "--training-file", "t.jsonl"]) == EXIT_USAGE
    assert json.loads(capsys.readouterr().err.strip().splitlines()[-1])["error"]["code"] == "invalid_job_spec"


def test_conversation_the_chat_template_rejects_names_its_line(tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    from tests.helpers.tiny_models import CHATML
    from transformers import AutoTokenizer

    # Given a model whose chat template insists on a user turn first, like many instruct models' templates
    strict = tmp_path / "strict-model"
    shutil.copytree(tiny_model, strict)
    tokenizer = AutoTokenizer.from_pretrained(str(strict))
    tokenizer.chat_template = (
        "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('start with a user turn') }}{% endif %}" + CHATML
    )
    tokenizer.save_pretrained(str(strict))
    opening = {"messages": [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "say red"},
                            {"role": "assistant", "content": "red"}]}  # fmt: skip
    train = write_jsonl(tmp_path / "train.jsonl", [*chat_rows(4), opening])

    assert main(_args(strict, train, tmp_path / "out", "--validation-split", "0")) == EXIT_FAILED

    error = _failed(tmp_path / "out")
    assert (error["code"], error["param"]) == ("invalid_training_file", "training_file")
    assert error["message"].startswith("line 5:") and "start with a user turn" in error["message"]
