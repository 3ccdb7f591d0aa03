"""Read a peft LoRA adapter directory and check everything a bad adapter can get wrong, before any engine sees it.

peft itself lets several broken adapters load silently (FINDINGS.md): weight names that match no module, NaN
weights, another base model named in the config. Each check here turns one of those into a message a person can act
on; the server rejects the adapter with a 4xx and goes on serving everyone else.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


class AdapterError(ValueError):
    """The adapter cannot be served; the message says why."""


@dataclass
class LoRAWeights:
    rank: int
    scale: float
    # module name -> (A as (in, r), B as (r, out) already multiplied by scale): the layout the batched matmuls use.
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise AdapterError(f"adapter path {path} is not a directory")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise AdapterError(f"{CONFIG_FILE} not found in {path}")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{CONFIG_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise AdapterError(f"{CONFIG_FILE} must hold a JSON object")
    return config


def _check_config(config: dict[str, Any], base_names: set[str], max_rank: int) -> tuple[int, float]:
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"peft_type {config.get('peft_type')!r} is not supported: only LORA adapters")
    base = config.get("base_model_name_or_path")
    if base and base not in base_names:
        raise AdapterError(f"adapter was trained on {base!r}, but this server serves {sorted(base_names)[0]!r}")
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise AdapterError(f"adapter rank r={rank!r} must be a positive integer")
    if rank > max_rank:
        raise AdapterError(f"adapter rank r={rank} exceeds this server's max LoRA rank {max_rank}")
    alpha = config.get("lora_alpha", rank)
    if not isinstance(alpha, int | float) or isinstance(alpha, bool) or not math.isfinite(alpha):
        raise AdapterError(f"lora_alpha={alpha!r} must be a finite number")
    unsupported = {
        "use_dora": bool(config.get("use_dora")),
        "fan_in_fan_out": bool(config.get("fan_in_fan_out")),
        "bias": config.get("bias", "none") not in (None, "none"),
        "modules_to_save": bool(config.get("modules_to_save")),
        "rank_pattern": bool(config.get("rank_pattern")),
        "alpha_pattern": bool(config.get("alpha_pattern")),
        "layers_to_transform": config.get("layers_to_transform") is not None,
    }
    if bad := [name for name, used in unsupported.items() if used]:
        raise AdapterError(f"adapter uses {', '.join(bad)}, which this server does not support")
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    return rank, float(scale)


def _targeted(config: dict[str, Any], targets: dict[str, tuple[int, int]]) -> set[str]:
    """The model modules the config's target_modules select, as peft would select them."""
    wanted = config.get("target_modules")
    if isinstance(wanted, str):
        # peft treats a string as a regular expression over the full module name.
        try:
            pattern = re.compile(wanted)
        except re.error as exc:
            raise AdapterError(f"target_modules {wanted!r} is not a valid regular expression: {exc}") from exc
        chosen = {name for name in targets if pattern.fullmatch(name)}
        if not chosen:
            raise AdapterError(f"target_modules {wanted!r} matches no module this server can adapt")
        return chosen
    if not isinstance(wanted, list) or not wanted or not all(isinstance(t, str) for t in wanted):
        raise AdapterError("target_modules must be a non-empty list of module names")
    chosen = set()
    for target in wanted:
        found = {name for name in targets if name == target or name.endswith("." + target)}
        if not found:
            raise AdapterError(f"target module {target!r} not found in the base model (or not adaptable here)")
        chosen |= found
    return chosen


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        extra = (
            " (adapter_model.bin is not accepted: pickle files can run code)"
            if (path / "adapter_model.bin").exists()
            else ""
        )
        raise AdapterError(f"{WEIGHTS_FILE} not found in {path}{extra}")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AdapterError(f"{WEIGHTS_FILE} is corrupt or not a safetensors file: {exc}") from exc


def read_adapter(
    path: Path, targets: dict[str, tuple[int, int]], base_names: set[str], max_rank: int, keep_weights: bool = True
) -> LoRAWeights:
    """Validate the adapter at path against the served model; return its weights in the batched layout."""
    config = _read_config(path)
    rank, scale = _check_config(config, base_names, max_rank)
    chosen = _targeted(config, targets)
    tensors = _read_tensors(path)
    if not tensors:
        raise AdapterError(f"{WEIGHTS_FILE} holds no tensors")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.match(key)
        if match is None:
            raise AdapterError(f"weight {key!r} is not a LoRA A/B weight of this server's layout")
        module = match["module"]
        if module not in targets:
            raise AdapterError(f"weight {key!r} names module {module!r}, which the base model does not have")
        if module not in chosen:
            raise AdapterError(f"weight {key!r} is for {module!r}, which target_modules in {CONFIG_FILE} excludes")
        parts.setdefault(module, {})[match["part"]] = tensor
    missing = sorted(chosen - {m for m, p in parts.items() if len(p) == 2})
    if missing:
        raise AdapterError(f"{len(missing)} targeted modules have no lora_A/lora_B weights, e.g. {missing[0]!r}")
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for module, pair in sorted(parts.items()):
        a, b = pair["A"], pair["B"]
        fan_in, fan_out = targets[module]
        if tuple(a.shape) != (rank, fan_in) or tuple(b.shape) != (fan_out, rank):
            raise AdapterError(
                f"size mismatch for {module}: lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)}, expected "
                f"{(rank, fan_in)} and {(fan_out, rank)} (another base model or rank?)"
            )
        if not (a.is_floating_point() and b.is_floating_point()):
            raise AdapterError(f"weights of {module} are not floating point")
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise AdapterError(f"weights of {module} contain NaN or infinite values")
        if keep_weights:
            modules[module] = (a.float().t().contiguous(), (b.float() * scale).t().contiguous())
    return LoRAWeights(rank=rank, scale=scale, modules=modules)
