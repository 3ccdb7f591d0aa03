"""Shared fixtures: a tiny random Llama (hidden 64, 2 layers) with SmolLM2's real tokenizer, peft adapters made on
it, and apps built around a running engine. The real SmolLM2 is loaded only by tests marked slow."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from tests.helpers.tiny_models import BASE, save_adapter, tiny_model

from ministudio_serve.app import create_app
from ministudio_serve.engines.transformers_engine import TransformersEngine
from ministudio_serve.settings import ServeSettings

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


@pytest.fixture
def make_engine(tokenizer: Any) -> Callable[..., TransformersEngine]:
    def build(**kwargs: Any) -> TransformersEngine:
        kwargs.setdefault("batch_timeout_ms", 0)
        return TransformersEngine(tiny_model(len(tokenizer)), tokenizer, BASE, **kwargs)

    return build


@pytest.fixture
def adapter_factory(tmp_path: Path, tokenizer: Any) -> Callable[..., Path]:
    def make(name: str, seed: int = 1, **kwargs: Any) -> Path:
        return save_adapter(tmp_path / name, tokenizer, seed, **kwargs)

    return make


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., ServeSettings]:
    def make(**overrides: Any) -> ServeSettings:
        # Task models (VADER, MiniLM) load on first use here, not in the background of every test.
        values: dict[str, Any] = {
            "model": BASE,
            "request_log": tmp_path / "requests.sqlite",
            "max_loras": 4,
            "preload_task_models": False,
        }
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
