"""Hyperparameters: defaults, "auto", strings from SageMaker, and range checks that name the bad parameter."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ministudio_train.errors import invalid_hyperparameter

BASE_LEARNING_RATE = 2e-4  # LoRA on q/k/v/o at r=8 is stable here; the user scales it with the multiplier

HYPERPARAMETERS: dict[str, Any] = {
    "n_epochs": "auto",
    "batch_size": "auto",
    "learning_rate_multiplier": "auto",
    "prompt_loss_weight": 0.01,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "max_seq_len": 512,
    "validation_split": 0.1,
    "warmup_ratio": 0.03,
    "lr_scheduler": "linear",
    # Stops early; for smoke tests and benchmarks, not part of OpenAI's hyperparameters.
    "max_steps": None,
    # Steps between resumable checkpoints (besides the one at each epoch's end): a run that dies loses at most this.
    "checkpoint_steps": 250,
}
_SCHEDULERS = ("linear", "cosine", "constant")  # train.SCHEDULES maps them to transformers


@dataclass(frozen=True)
class Hyper:
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    prompt_loss_weight: float
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    max_seq_len: int
    validation_split: float
    warmup_ratio: float
    lr_scheduler: str
    max_steps: int | None
    checkpoint_steps: int = HYPERPARAMETERS["checkpoint_steps"]

    @property
    def learning_rate(self) -> float:
        return BASE_LEARNING_RATE * self.learning_rate_multiplier

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "learning_rate": self.learning_rate}


def _number(name: str, value: Any, kind: type, low: float, high: float) -> Any:
    if isinstance(value, bool):
        raise invalid_hyperparameter(name, f"{name} must be a number, got {value!r}")
    try:
        number = kind(value) if kind is float else _as_int(value)
    except (TypeError, ValueError):
        raise invalid_hyperparameter(
            name, f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None
    if not (low <= number <= high) or (kind is float and not math.isfinite(number)):
        raise invalid_hyperparameter(name, f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return number


def _as_int(value: Any) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, str):
        raise ValueError(value)
    return int(value)


def auto_batch_size(n_train: int) -> int:
    # OpenAI's rule of thumb (~0.2% of the examples), kept between 4 and 32 and never above the example count.
    return max(1, min(n_train, max(4, min(32, round(0.002 * n_train)))))


def auto_n_epochs(n_train: int) -> int:
    # Small sets need more passes to move the model; large ones are learnt in one or two.
    return 3 if n_train < 10_000 else 2 if n_train < 100_000 else 1


def resolve(raw: dict[str, Any], n_train: int | None = None, context_length: int | None = None) -> Hyper:
    """Check every value and fill "auto"; with n_train, also check what depends on the data (batch size)."""
    unknown = sorted(set(raw) - set(HYPERPARAMETERS))
    if unknown:
        raise invalid_hyperparameter(
            unknown[0], f"unknown hyperparameter {unknown[0]!r}; known: {', '.join(sorted(HYPERPARAMETERS))}"
        )
    values = {**HYPERPARAMETERS, **{k: v for k, v in raw.items() if v is not None or k == "max_steps"}}
    count = n_train if n_train is not None else 1_000_000

    def auto(name: str, fallback: Any) -> Any:
        value = values[name]
        return fallback if isinstance(value, str) and value.strip().lower() == "auto" else value

    n_epochs = _number("n_epochs", auto("n_epochs", auto_n_epochs(count)), int, 1, 50)
    batch_size = _number("batch_size", auto("batch_size", auto_batch_size(count)), int, 1, 256)
    if n_train is not None and batch_size > n_train:
        raise invalid_hyperparameter(
            "batch_size",
            f"batch_size {batch_size} is larger than the {n_train} training examples: "
            f"use batch_size <= {n_train} or add examples",
        )
    max_len_cap = context_length or 32_768
    scheduler = str(values["lr_scheduler"]).lower()
    if scheduler not in _SCHEDULERS:
        raise invalid_hyperparameter("lr_scheduler", f"lr_scheduler must be one of {', '.join(_SCHEDULERS)}")
    max_steps = values["max_steps"]
    return Hyper(
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate_multiplier=_number(
            "learning_rate_multiplier", auto("learning_rate_multiplier", 1.0), float, 1e-3, 10.0
        ),
        prompt_loss_weight=_number("prompt_loss_weight", values["prompt_loss_weight"], float, 0.0, 1.0),
        lora_r=_number("lora_r", values["lora_r"], int, 1, 256),
        lora_alpha=_number("lora_alpha", values["lora_alpha"], int, 1, 1024),
        lora_dropout=_number("lora_dropout", values["lora_dropout"], float, 0.0, 0.9),
        max_seq_len=_number("max_seq_len", values["max_seq_len"], int, 16, max_len_cap),
        validation_split=_number("validation_split", values["validation_split"], float, 0.0, 0.5),
        warmup_ratio=_number("warmup_ratio", values["warmup_ratio"], float, 0.0, 0.5),
        lr_scheduler=scheduler,
        max_steps=None if max_steps is None else _number("max_steps", max_steps, int, 1, 10_000_000),
        checkpoint_steps=_number("checkpoint_steps", values["checkpoint_steps"], int, 1, 10_000_000),
    )
