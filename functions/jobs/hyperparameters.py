"""Hyperparameters as OpenAI takes them ("auto" or a value), plus Mini Studio's LoRA settings.

Every problem is an InvalidRequest naming the field (`hyperparameters.n_epochs`), so the client can fix it.
"""

from __future__ import annotations

from typing import Any

from functions.core.errors import InvalidRequest

# name: (type, minimum, maximum, exclusive minimum, auto value)
SPECS: dict[str, tuple[type, float, float, bool, Any]] = {
    "n_epochs": (int, 1, 50, False, 3),
    "batch_size": (int, 1, 256, False, 4),
    "learning_rate_multiplier": (float, 0, 100, True, 1.0),
    "prompt_loss_weight": (float, 0, 1, False, 0.01),
    "lora_r": (int, 1, 256, False, 8),
    "lora_alpha": (int, 1, 1024, False, 16),
    "lora_dropout": (float, 0, 0.9, False, 0.05),
    "max_seq_len": (int, 16, 32768, False, 512),
    "validation_split": (float, 0, 0.5, False, 0.0),
    "checkpoint_steps": (int, 1, 10_000_000, False, 250),  # steps between resumable checkpoints (trainer's hyper.py)
}
AUTO_ONLY_OPENAI = ("n_epochs", "batch_size", "learning_rate_multiplier")


def check(values: dict[str, Any] | None, prefix: str = "hyperparameters") -> dict[str, Any]:
    """Validate and normalise; returns what was asked ("auto" kept). Unknown names are refused."""
    asked: dict[str, Any] = {}
    for name, value in (values or {}).items():
        param = f"{prefix}.{name}"
        if name not in SPECS:
            raise InvalidRequest(f"{param} is not a known hyperparameter; known: {sorted(SPECS)}", param=param)
        kind, low, high, exclusive, _ = SPECS[name]
        if value == "auto":
            asked[name] = "auto"
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (kind is int and not isinstance(value, int))
        ):
            raise InvalidRequest(f'{param} must be "auto" or a{"n integer" if kind is int else " number"}', param=param)
        too_low = value <= low if exclusive else value < low
        if too_low or value > high:
            bound = f"greater than {low}" if exclusive else f"at least {low}"
            raise InvalidRequest(f"{param} must be {bound} and at most {high}; got {value}", param=param)
        asked[name] = kind(value)
    return asked


def resolve(asked: dict[str, Any], examples: int | None = None) -> dict[str, Any]:
    """Concrete values for the trainer: "auto" and missing names take defaults sized to the dataset."""
    resolved: dict[str, Any] = {}
    for name, (_, _, _, _, auto) in SPECS.items():
        value = asked.get(name, "auto")
        resolved[name] = _auto(name, auto, examples) if value == "auto" else value
    return resolved


def _auto(name: str, default: Any, examples: int | None) -> Any:
    if name == "n_epochs" and examples:
        # Small datasets need more passes; large ones fewer (OpenAI's auto behaves the same way).
        return max(1, min(10, round(300 / max(examples, 1)))) if examples < 100 else 3 if examples < 1000 else 1
    if name == "batch_size" and examples:
        return max(1, min(16, examples // 50 or 1))
    return default
