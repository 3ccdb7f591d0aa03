"""Loading the base model and tokenizer, wrapping them with LoRA, and saving adapters the serving side can load."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ministudio_train import attention
from ministudio_train.errors import TrainError
from ministudio_train.hyper import Hyper

log = logging.getLogger("ministudio_train")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass(frozen=True)
class Precision:
    device: torch.device
    weights: torch.dtype  # frozen base weights
    autocast: torch.dtype | None  # None: plain fp32
    grad_scaling: bool  # fp16 needs a GradScaler, bf16 does not
    checkpointing: bool


def pick_precision() -> Precision:
    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        half = torch.bfloat16 if bf16 else torch.float16
        return Precision(torch.device("cuda"), half, half, not bf16, True)
    # bf16 on CPU is ~2x faster here but changes outputs (FINDINGS): keep fp32 where there is no GPU.
    return Precision(torch.device("cpu"), torch.float32, None, False, False)


def model_dir_for(ref: str) -> Path:
    from ministudio_common import loader

    try:
        return loader.resolve(ref)
    except loader.ModelNotFound as exc:
        raise TrainError(
            "model_not_found",
            f"{exc}: use a base model from the catalogue, a model directory, "
            "a .gguf file or an s3:// prefix holding one",
            "model",
        ) from None
    except Exception as exc:  # a broken GGUF or an unreachable bucket: the model cannot be had either way
        raise TrainError("model_not_found", f"model {ref!r} could not be loaded: {exc}", "model") from None


def load_tokenizer(model_dir: Path, ref: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except Exception as exc:
        raise TrainError("model_not_found", f"model {ref!r} has no usable tokenizer: {exc}", "model") from None
    if not getattr(tokenizer, "is_fast", False):
        raise TrainError("model_not_found", f"model {ref!r} needs a fast tokenizer (tokenizer.json)", "model")
    return tokenizer


def context_length(model_dir: Path) -> int | None:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = config.get("max_position_embeddings")
    return int(value) if isinstance(value, int) else None


def load_lora_model(model_dir: Path, ref: str, hyper: Hyper, precision: Precision, place: bool = True) -> Any:
    """The base with LoRA adapters on its projections, on the training device (on the CPU when not `place`d: FSDP
    then moves each worker's shard, never a whole copy, to its GPU)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    try:
        base: Any = AutoModelForCausalLM.from_pretrained(
            str(model_dir), dtype=precision.weights, attn_implementation=attention.NAME
        )
    except Exception as exc:
        raise TrainError("model_not_found", f"model {ref!r} could not be loaded: {exc}", "model") from None
    base.config.use_cache = False
    if place:
        base.to(precision.device)
    if precision.checkpointing:
        # Non-reentrant checkpointing works with frozen inputs, so no enable_input_require_grads hook is needed.
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    config = LoraConfig(
        r=hyper.lora_r,
        lora_alpha=hyper.lora_alpha,
        lora_dropout=hyper.lora_dropout,
        target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(base, config)  # LoRA weights stay fp32 even on a half-precision base
    except ValueError as exc:
        raise TrainError(
            "model_not_found", f"model {ref!r} has no {'/'.join(LORA_TARGETS)} projections to adapt: {exc}", "model"
        ) from None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        "LoRA r=%d alpha=%d on %s: %d trainable parameters",
        hyper.lora_r,
        hyper.lora_alpha,
        ",".join(LORA_TARGETS),
        trainable,
    )
    return model


def save_adapter(
    model: Any, tokenizer: Any, dest: Path, base_ref: str, extra: dict[str, Any], weights: dict[str, Any] | None = None
) -> Path:
    """adapter_model.safetensors + adapter_config.json naming the base by its public name, + tokenizer files.
    `weights`: the model's full trainable state when the model itself holds shards of it (sharding.py)."""
    dest.mkdir(parents=True, exist_ok=True)
    config = model.peft_config["default"]
    local_base = config.base_model_name_or_path
    config.base_model_name_or_path = base_ref  # the cache path means nothing to the inference server
    try:
        # Embeddings are never trained; "auto" would ask the hub about the base: a stall where there is no network.
        given = {"state_dict": weights} if weights is not None else {}
        model.save_pretrained(str(dest), safe_serialization=True, save_embedding_layers=False, **given)
    finally:
        config.base_model_name_or_path = local_base
    tokenizer.save_pretrained(str(dest))
    (dest / "ministudio.json").write_text(json.dumps(extra, indent=2))
    return dest
