"""Failures a user can act on. Each becomes `result.json`'s `error {code, message, param}` and a non-zero exit."""

from __future__ import annotations

from typing import Any


class TrainError(Exception):
    """A job failure with an OpenAI-style error code and, where one is to blame, the parameter that caused it."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param}


class Cancelled(Exception):
    """SIGTERM or SIGINT arrived: stop at the next safe point, checkpoint, report `cancelled`."""


def invalid_hyperparameter(param: str, message: str) -> TrainError:
    return TrainError("invalid_hyperparameters", message, param)


def out_of_memory(batch_size: int, max_seq_len: int, detail: str) -> TrainError:
    smaller = max(1, batch_size // 2)
    return TrainError(
        "out_of_memory",
        f"training ran out of memory with batch_size={batch_size} and max_seq_len={max_seq_len}: "
        f"retry with a smaller batch_size (e.g. {smaller}) or a shorter max_seq_len ({detail[:200]})",
        "batch_size",
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA raises OutOfMemoryError; the CPU allocator raises a RuntimeError or MemoryError."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is always there in the image
        pass
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
