"""Fixtures: the tiny random Llama and its tokenizer, built once per session (the builders live in
tests.helpers.tiny_models, shared with the inference server's tests and the control plane's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.helpers.tiny_models import build_model_dir


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model))
