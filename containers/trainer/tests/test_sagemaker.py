"""A SageMaker training job's view: `<image> train`, string hyperparameters, channels, /opt/ml/model and failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers.datasets import chat_rows, read_json, write_jsonl

from ministudio_train.cli import EXIT_FAILED, EXIT_OK, main


def _opt_ml(root: Path, hyperparameters: dict[str, str], rows: int = 10) -> Path:
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    write_jsonl(root / "input" / "data" / "training" / "train.jsonl", chat_rows(rows))
    return root


def test_sagemaker_job_trains_from_its_channel_into_the_model_dir(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hyperparameters = {"model": str(tiny_model), "job_id": "ftjob-sm", "tenant": "acme", "n_epochs": "2",
                       "batch_size": "4", "validation_split": "0.2"}  # fmt: skip
    root = _opt_ml(tmp_path / "opt" / "ml", hyperparameters)
    monkeypatch.setenv("MINISTUDIO_SAGEMAKER_ROOT", str(root))
    monkeypatch.delenv("MINISTUDIO_JOB_SPEC", raising=False)

    assert main(["train"]) == EXIT_OK

    model_dir = root / "model"  # SageMaker uploads this as model.tar.gz
    result = read_json(model_dir / "result.json")
    assert result["status"] == "succeeded" and result["epochs"] == 2
    assert (model_dir / "adapter" / "adapter_model.safetensors").is_file()
    for n in (1, 2):  # SageMaker syncs /opt/ml/checkpoints to the job's checkpoint S3 URI
        assert (root / "checkpoints" / f"epoch-{n}" / "adapter_model.safetensors").is_file()
    assert not (root / "output" / "failure").exists()


def test_sagemaker_failure_reason_is_written_for_the_console(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _opt_ml(tmp_path / "opt" / "ml", {"model": str(tiny_model), "batch_size": "lots"})
    monkeypatch.setenv("MINISTUDIO_SAGEMAKER_ROOT", str(root))

    assert main(["train"]) == EXIT_FAILED

    assert (root / "output" / "failure").read_text().startswith("invalid_hyperparameters: batch_size")
    assert read_json(root / "model" / "result.json")["error"]["param"] == "batch_size"
