"""Adapters as the serving side needs them: the base named by its public id, saved without asking the hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.tiny_models import build_tokenizer

from ministudio_train import hyper, model


def test_adapter_names_the_public_base_and_saves_offline(
    tiny_model: Path, tiny_tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import peft.utils.save_and_load as save_and_load

    def no_network(*args: Any, **kwargs: Any) -> bool:
        raise AssertionError("saving an adapter must not query the hub (containers may have no network)")

    monkeypatch.setattr(save_and_load, "check_file_exists_on_hf_hub", no_network)
    lora = model.load_lora_model(tiny_model, "tiny", hyper.resolve({"lora_r": 4}), model.pick_precision())

    dest = model.save_adapter(lora, tiny_tokenizer, tmp_path / "adapter", "HuggingFaceTB/SmolLM2-135M-Instruct",
                              {"job_id": "ftjob-x"})  # fmt: skip

    config = json.loads((dest / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and config["r"] == 4
    assert lora.peft_config["default"].base_model_name_or_path == str(tiny_model)  # the live model is untouched
    assert json.loads((dest / "ministudio.json").read_text()) == {"job_id": "ftjob-x"}


def test_model_without_fast_tokenizer_or_weights_is_model_not_found(tmp_path: Path) -> None:
    from ministudio_train.errors import TrainError

    broken = tmp_path / "broken"
    build_tokenizer(broken)
    (broken / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 10}))

    with pytest.raises(TrainError) as info:
        model.load_lora_model(broken, "broken", hyper.resolve({}), model.pick_precision())

    assert (info.value.code, info.value.param) == ("model_not_found", "model")
