"""Fixtures: the tiny random Llama and its tokenizer, built once per session (helpers live in ministudio_train.testing,
importable under pytest's importlib mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ministudio_train.testing import build_model_dir


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model))
