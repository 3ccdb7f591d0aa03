"""Tokens, per-token loss weights, packed batches and the weighted loss.

A step takes `batch_size` examples and concatenates them into as few rows as fit `row_tokens` (padding-free
packing). Position ids restart at 0 for each example (RoPE sees each example from position 0) and the attention in
attention.py runs each example's span on its own, so packed examples never attend to each other. Only the tail of
the longest row is padded, and padding carries weight 0.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ministudio_train.data import Example

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    weights: list[float]  # how much predicting each token counts: 1 for assistant tokens, prompt_loss_weight else
    truncated: bool = False  # the example was longer than max_seq_len and lost its tail


@dataclass
class Batch:
    input_ids: torch.Tensor  # [rows, length]
    position_ids: torch.Tensor
    labels: torch.Tensor  # labels[t] = input_ids[t + 1] within an example, IGNORE at example ends and padding
    weights: torch.Tensor  # float weight of labels[t], 0 where ignored
    real_tokens: int  # non-padding input tokens
    examples: int
    segments: list[list[int]]  # per row, the lengths of the examples packed into it, in order

    def to(self, device: torch.device) -> Batch:
        ids, positions, labels, weights = (t.to(device) for t in (self.input_ids, self.position_ids, self.labels,
                                                                   self.weights))  # fmt: skip
        return Batch(ids, positions, labels, weights, self.real_tokens, self.examples, self.segments)


def _render(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool = False) -> str:
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt))


def _assistant_spans(tokenizer: Any, messages: list[dict[str, Any]], full: str) -> list[tuple[int, int, float]]:
    """Character spans of assistant turns (content and end-of-turn marker) in the rendered conversation."""
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, plain[:i], generation_prompt=True) if i else ""
        through = _render(tokenizer, plain[: i + 1])
        if full.startswith(through) and through.startswith(before):
            spans.append((len(before), len(through), float(message.get("weight", 1))))
        else:
            # A template that renders prefixes differently (e.g. drops earlier reasoning): find the content itself.
            start = full.rfind(message["content"])
            if start >= 0:
                spans.append((start, start + len(message["content"]), float(message.get("weight", 1))))
    return spans


def encode(tokenizer: Any, example: Example, prompt_loss_weight: float, max_len: int) -> Encoded:
    """Token ids and per-token weights, truncated to max_len."""
    if example.messages is None:
        # Raw prompt/completion (the completions API's format): no chat template, EOS ends the completion.
        prompt_ids = list(tokenizer(example.prompt or "")["input_ids"])
        completion_ids = list(tokenizer(example.completion or "", add_special_tokens=False)["input_ids"])
        if tokenizer.eos_token_id is not None:
            completion_ids.append(int(tokenizer.eos_token_id))
        ids = prompt_ids + completion_ids
        weights = [prompt_loss_weight] * len(prompt_ids) + [1.0] * len(completion_ids)
        return Encoded(ids[:max_len], weights[:max_len], len(ids) > max_len)
    messages = list(example.messages)
    full = _render(tokenizer, [{"role": m["role"], "content": m["content"]} for m in messages])
    spans = _assistant_spans(tokenizer, messages, full)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    weights = []
    for start, _end in enc["offset_mapping"]:
        weight = prompt_loss_weight
        for span_start, span_end, span_weight in spans:
            if span_start <= start < span_end:
                weight = span_weight
                break
        weights.append(weight)
    return Encoded(ids[:max_len], weights[:max_len], len(ids) > max_len)


def plan_steps(n_examples: int, batch_size: int, epoch: int, seed: int) -> list[list[int]]:
    """Example indices for each step of an epoch: a seeded shuffle per epoch, the last step may be short."""
    order = list(range(n_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)  # noqa: S311 - reproducible order, not secrecy
    return [order[i : i + batch_size] for i in range(0, n_examples, batch_size)]


def _pack_rows(lengths: list[int], row_tokens: int) -> list[list[int]]:
    """First-fit decreasing: indices into lengths grouped into rows of at most row_tokens tokens."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(row_tokens - lengths[i])
    return rows


def collate(examples: list[Encoded], row_tokens: int, pad_id: int) -> Batch:
    """Pack examples into rows; each example's last token predicts nothing, so no loss crosses a boundary."""
    rows = _pack_rows([len(e.input_ids) for e in examples], row_tokens)
    length = max(sum(len(examples[i].input_ids) for i in row) for row in rows)
    shape = (len(rows), length)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE, dtype=torch.long)
    weights = torch.zeros(shape, dtype=torch.float32)
    position_ids = torch.zeros(shape, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            ids, w = examples[i].input_ids, examples[i].weights
            n = len(ids)
            input_ids[r, at : at + n] = torch.tensor(ids)
            position_ids[r, at : at + n] = torch.arange(n)
            if n > 1:
                labels[r, at : at + n - 1] = torch.tensor(ids[1:])
                weights[r, at : at + n - 1] = torch.tensor(w[1:])
            at += n
        # Padding restarts its positions so it forms its own segment: no real token attends to it.
        position_ids[r, at:] = torch.arange(length - at)
    real = sum(len(e.input_ids) for e in examples)
    segments = [[len(examples[i].input_ids) for i in row] for row in rows]
    return Batch(input_ids, position_ids, labels, weights, real, len(examples), segments)


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per token, scaled by its weight, averaged over the total weight (0 when nothing counts)."""
    ce = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE, reduction="none"
    )
    flat = weights.reshape(-1)
    return (ce * flat).sum() / flat.sum().clamp_min(1e-8)


def forward_loss(model: Any, batch: Batch) -> torch.Tensor:
    """Run the model and the weighted loss, computing logits only where some row has a non-zero weight."""
    keep = (batch.weights > 0).any(dim=0).nonzero().squeeze(-1)
    if keep.numel() == 0:
        return batch.weights.sum() * 0.0
    out = model(
        input_ids=batch.input_ids,
        position_ids=batch.position_ids,
        packed_segments=batch.segments,
        use_cache=False,
        logits_to_keep=keep,
    )
    return weighted_loss(out.logits, batch.labels[:, keep], batch.weights[:, keep])
