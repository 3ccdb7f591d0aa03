"""The one interface both engines implement, and the plain data that crosses it.

Routes and services speak only these types, so the transformers engine (CPU or GPU, this repo's continuous batcher)
and the vLLM engine (GPU image) are interchangeable behind `--engine`.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length"]


class EngineError(Exception):
    """A request the engine cannot serve; `status` is the HTTP status the caller should see."""

    status = 400
    code = "invalid_request_error"


class ContextLengthExceeded(EngineError):
    code = "context_length_exceeded"


class EngineUnavailable(EngineError):
    status = 503
    code = "service_unavailable"


class OutOfMemory(EngineUnavailable):
    """The accelerator ran out of memory for this request: a 503 the client may retry (smaller, or later)."""

    code = "out_of_memory"


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError (a RuntimeError subclass), or a RuntimeError saying "CUDA out of memory"."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, (RuntimeError, MemoryError)) and "out of memory" in str(exc).lower()


def out_of_memory(exc: BaseException) -> OutOfMemory:
    reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return OutOfMemory(
        f"The server ran out of GPU memory for this request; retry later or ask for fewer tokens ({reason})"
    )


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # vLLM's option: run to max_tokens (benchmarks use it for equal-length rows)
    min_tokens: int = 0  # vLLM's option: EOS cannot end the text before this many tokens (seed 003's min_length)


@dataclass
class AdapterHandle:
    """A validated LoRA adapter as an engine uses it: weights in memory (transformers) or a path and id (vLLM)."""

    name: str
    uid: int  # unique per load, so a reloaded adapter never reuses a stale slot
    path: str
    rank: int
    weights: Any = None  # engines/lora.py LoRAWeights for the transformers engine; None for vLLM


@dataclass
class GenerationRequest:
    request_id: str
    prompt_ids: list[int]
    sampling: Sampling
    adapter: AdapterHandle | None = None


@dataclass
class GenerationChunk:
    """What one engine step produced for one request: new text, and on the last chunk why it ended."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class EngineStats:
    running: int
    waiting: int
    adapters_resident: int


class Engine(abc.ABC):
    """Owns the model. `generate` streams chunks; the last one carries `finish_reason` and the token counts."""

    name: str
    context_length: int
    tokenizer: Any

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]: ...

    @abc.abstractmethod
    def lora_targets(self) -> dict[str, tuple[int, int]]:
        """Every module an adapter may target, by full name, with its (in_features, out_features)."""

    @abc.abstractmethod
    async def add_adapter(self, adapter: AdapterHandle) -> None:
        """Make the adapter usable; the adapter service has already validated it."""

    @abc.abstractmethod
    async def remove_adapter(self, adapter: AdapterHandle) -> None: ...

    @abc.abstractmethod
    def stats(self) -> EngineStats: ...

    @property
    def device(self) -> str:
        return "cpu"
