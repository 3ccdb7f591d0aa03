"""Build the engine the settings name. Heavy imports (torch, transformers, vllm) happen here, at load time only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ministudio_serve.engines.base import Engine
from ministudio_serve.settings import ServeSettings


def build_engine(settings: ServeSettings, base_model: str | None = None) -> tuple[Engine, Path]:
    """base_model: what to load instead of settings.model (a registry's model names its base: registry.py)."""
    from ministudio_common import loader

    model_dir = loader.resolve(base_model or settings.model)
    if settings.engine == "vllm":
        from ministudio_serve.engines.vllm_engine import VLLMEngine

        return VLLMEngine.load(model_dir, settings), model_dir
    if settings.torch_threads:
        import torch

        # On a shared CPU, fewer threads than cores avoids OpenMP spin-waiting against other processes.
        torch.set_num_threads(settings.torch_threads)
    engine = load_transformers(
        model_dir,
        settings.model_name,
        device=settings.device,
        dtype=settings.dtype,
        max_batch_size=settings.max_batch_size,
        batch_timeout_ms=settings.batch_timeout_ms,
        max_loras=settings.max_loras,
        max_lora_rank=settings.max_lora_rank,
        prefix_cache_tokens=settings.prefix_cache_tokens,
    )
    return engine, model_dir


def load_transformers(model_dir: Path, name: str, device: str = "auto", dtype: str = "auto", **kwargs: Any) -> Engine:
    """The transformers engine on a safetensors model directory (what `ministudio_common.loader.resolve` returns)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ministudio_serve.engines.transformers_engine import TransformersEngine

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        # bf16 on this CPU is ~2x faster but changed 3 of 8 greedy outputs (FINDINGS.md): fp32 on CPU.
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype))
    model = model.to(torch.device(device))  # type: ignore[arg-type]  # transformers types .to() narrowly
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return TransformersEngine(model, tokenizer, name, **kwargs)
