"""Shared fixtures: a tiny random Llama (hidden 64, 2 layers) with SmolLM2's real tokenizer, peft adapters made on
it, and apps built around a running engine. The real SmolLM2 is loaded only by tests marked slow."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from transformers import LlamaConfig, LlamaForCausalLM

from ministudio_serve.app import create_app
from ministudio_serve.engines.transformers_engine import TransformersEngine
from ministudio_serve.settings import ServeSettings

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # peft looks up the base model's config online otherwise
# The tiny model's ops are small: one intra-op thread avoids OpenMP waits on a shared 2-core machine (4x faster).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from ministudio_common import loader

    return loader.resolve(BASE)  # converted once per machine (~45 s), then a cache hit


@pytest.fixture(scope="session")
def tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


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


@pytest.fixture
def make_engine(tokenizer: Any) -> Callable[..., TransformersEngine]:
    def build(**kwargs: Any) -> TransformersEngine:
        kwargs.setdefault("batch_timeout_ms", 0)
        return TransformersEngine(tiny_model(len(tokenizer)), tokenizer, BASE, **kwargs)

    return build


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


@pytest.fixture
def adapter_factory(tmp_path: Path, tokenizer: Any) -> Callable[..., Path]:
    def make(name: str, seed: int = 1, **kwargs: Any) -> Path:
        return save_adapter(tmp_path / name, tokenizer, seed, **kwargs)

    return make


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., ServeSettings]:
    def make(**overrides: Any) -> ServeSettings:
        values: dict[str, Any] = {"model": BASE, "request_log": tmp_path / "requests.sqlite", "max_loras": 4}
        values.update(overrides)
        return ServeSettings(**values)

    return make


@pytest.fixture
def client(
    settings_factory: Callable[..., ServeSettings], make_engine: Callable[..., TransformersEngine]
) -> Iterator[TestClient]:
    app = create_app(settings_factory(), engine=make_engine(max_loras=4))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def run(coro: Any) -> Any:
    return asyncio.run(coro)
