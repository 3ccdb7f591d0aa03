"""Helpers for this package's tests (and for anyone testing against the server): a tiny random Llama with a real
tokenizer's vocabulary, peft adapters made on it as the trainer would save them. Importable under pytest's
importlib mode, where test modules cannot import conftest."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


def tiny_model(vocab: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=2,
        pad_token_id=2,
        bos_token_id=1,
        initializer_range=0.1,  # peakier logits than the default: greedy choices are not near-ties
    )
    config.name_or_path = BASE
    model = LlamaForCausalLM(config).eval()
    model.name_or_path = BASE
    return model


def save_adapter(path: Path, tokenizer: Any, seed: int, target: list[str] | None = None, rank: int = 8) -> Path:
    """A peft LoRA adapter on the tiny model with random (non-zero) B, as the trainer would save it."""
    from peft import LoraConfig, get_peft_model

    model = tiny_model(len(tokenizer))
    config = LoraConfig(
        r=rank, lora_alpha=16, target_modules=target or ["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0
    )
    peft_model = get_peft_model(model, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.3)
    peft_model.save_pretrained(str(path))
    return path


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def run(coro: Any) -> Any:
    return asyncio.run(coro)
