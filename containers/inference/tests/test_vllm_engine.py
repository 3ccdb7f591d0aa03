"""The vLLM engine. Its adapter-size table is checked here on any machine; the engine itself needs the GPU image."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest
from tests.helpers.tiny_models import BASE, tiny_model

from ministudio_serve.engines import lora_layers
from ministudio_serve.engines.vllm_engine import targets_from_config


def _gpu_with_vllm() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


needs_vllm = pytest.mark.skipif(not _gpu_with_vllm(), reason="vllm and a CUDA GPU are required")


def test_targets_from_config_match_the_real_modules(tokenizer, model_dir: Path):
    model = tiny_model(len(tokenizer))
    assert targets_from_config(model.config.to_dict()) == lora_layers.lora_targets(model)
    smol = json.loads((model_dir / "config.json").read_text())
    targets = targets_from_config(smol)
    assert targets["model.layers.29.self_attn.k_proj"] == (576, 192)  # 3 KV heads x 64
    assert len(targets) == 30 * 7


@needs_vllm
@pytest.mark.gpu
def test_vllm_engine_generates_with_and_without_an_adapter(model_dir: Path, adapter_factory, tmp_path):
    from ministudio_serve.engines.base import GenerationRequest, Sampling
    from ministudio_serve.engines.vllm_engine import VLLMEngine
    from ministudio_serve.services.adapters import AdapterService
    from ministudio_serve.settings import ServeSettings

    settings = ServeSettings(model=BASE, engine="vllm", max_model_len=2048, gpu_memory_utilization=0.5)
    engine = VLLMEngine.load(model_dir, settings)

    async def scenario() -> tuple[str, str]:
        await engine.start()
        prompt = engine.tokenizer("Once upon a time")["input_ids"]
        texts = []
        for adapter in (None, "tuned"):
            handle = None
            if adapter:
                service = AdapterService(engine, {BASE, str(model_dir)}, 4, 16, keep_weights=False)
                # An adapter of SmolLM2's shape: made with peft on the real model's config.
                handle = await service.load(adapter, str(_smollm_adapter(model_dir, tmp_path)))
            text = ""
            async for chunk in engine.generate(
                GenerationRequest("r", prompt, Sampling(max_tokens=8, temperature=0), handle)
            ):
                text += chunk.text
            texts.append(text)
        await engine.stop()
        return texts[0], texts[1]

    base, tuned = asyncio.run(scenario())
    assert base and tuned and base != tuned


def _smollm_adapter(model_dir: Path, tmp_path: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    out = tmp_path / "smol-adapter"
    peft_model.save_pretrained(str(out))
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = BASE
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out
