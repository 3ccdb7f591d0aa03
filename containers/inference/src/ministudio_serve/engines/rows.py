"""One request's row in the continuous batch: where it stands in the KV cache, its sampler and detokenizer, and what
one sampled token does to it (text out, stop strings, EOS, max_tokens and the context limit)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ministudio_serve.engines.base import FinishReason, GenerationChunk, GenerationRequest
from ministudio_serve.engines.sampling import TextTracker


@dataclass(eq=False)
class Row:
    request: GenerationRequest
    emit: Callable[[GenerationChunk | BaseException], None]
    tracker: TextTracker
    generator: torch.Generator | None
    slot: int = 0
    length: int = 0  # real tokens in the KV cache
    next_token: int = -1  # sampled but not yet fed back
    generated: int = 0
    done: bool = False

    def step(self, token: int, eos: set[int], context_length: int) -> None:
        """Take the sampled token: emit its text (or the rest, when this ends the row) and note how it ended."""
        self.generated += 1
        sampling = self.request.sampling
        reason: FinishReason | None = None
        if token in eos and not sampling.ignore_eos:
            text, reason = self.tracker.flush(), "stop"
        else:
            text, stopped = self.tracker.push(token)
            if stopped:
                reason = "stop"
            elif self.generated >= sampling.max_tokens or self.length + 1 >= context_length:
                text, reason = text + self.tracker.flush(), "length"
        self.next_token = token
        chunk = GenerationChunk(text=text, token_ids=[token], finish_reason=reason)
        if reason is not None:
            self.done = True
            chunk.prompt_tokens = len(self.request.prompt_ids)
            chunk.completion_tokens = self.generated
        self.emit(chunk)


def adapter_id(row: Row) -> int:
    return row.request.adapter.uid if row.request.adapter is not None else 0


def hold_eos(rows: list[Row], logits: torch.Tensor, eos: set[int]) -> None:
    """Rows still short of their min_tokens cannot choose EOS yet."""
    early = [i for i, row in enumerate(rows) if row.generated < row.request.sampling.min_tokens]
    if early and eos:
        at = torch.tensor(early, device=logits.device).unsqueeze(1)
        logits[at, torch.tensor(sorted(eos), device=logits.device)] = float("-inf")
