"""The GPU path (half-precision base, fp32 LoRA, autocast, gradient checkpointing); runs only where CUDA is."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.helpers.datasets import chat_rows, read_json, write_jsonl

from ministudio_train.cli import EXIT_OK, main
from ministudio_train.model import pick_precision

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cuda_precision_is_half_with_checkpointing() -> None:
    precision = pick_precision()
    assert precision.device.type == "cuda" and precision.checkpointing
    assert precision.weights in (torch.bfloat16, torch.float16)
    assert precision.grad_scaling == (precision.weights == torch.float16)


def test_cuda_run_trains_and_saves_fp32_lora(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    monkeypatch.setenv("MINISTUDIO_SAGEMAKER_ROOT", "/nonexistent")
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(32))
    out = tmp_path / "out"

    code = main(["--model", str(tiny_model), "--training-file", str(train), "--output", str(out), "--n-epochs", "2",
                 "--batch-size", "8", "--learning-rate-multiplier", "10", "--log-every", "1"])  # fmt: skip

    assert code == EXIT_OK
    result = read_json(out / "result.json")
    assert result["status"] == "succeeded" and result["final_loss"] == result["final_loss"]  # not NaN
    weights = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert weights and all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in weights.values())
