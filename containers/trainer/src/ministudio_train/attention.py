"""Attention for packed rows: each example attends causally to itself only, without an L x L mask.

transformers can turn restarting position ids into a block-diagonal mask, but sdpa then computes every block of the
whole row and masks most of them away: at batch 4 x ~80 tokens that is ~9% more work per token than the padded
baseline's attention. Here each example's span runs its own causal sdpa (the mask-free fast kernel), padding is
skipped, and no mask is built at all (transformers skips mask creation for attention functions it does not know).
The segment lengths travel to every layer as the `packed_segments` keyword of the model call.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "ministudio_packed"


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # [rows, heads, length, head_dim]
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    packed_segments: list[list[int]] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    if packed_segments is None:  # one unpadded sequence per row, e.g. a quick check outside the trainer
        return sdpa_attention_forward(module, query, key, value, None, dropout, scaling, is_causal=True)
    _, heads, length, dim = query.shape
    outputs = []
    for row, lengths in enumerate(packed_segments):
        pieces, start = [], 0
        for n in lengths:
            end = start + n
            out, _ = sdpa_attention_forward(
                module, query[row : row + 1, :, start:end], key[row : row + 1, :, start:end],
                value[row : row + 1, :, start:end], None, dropout, scaling, is_causal=True,
            )  # fmt: skip
            pieces.append(out)
            start = end
        if start < length:  # the row's padding tail: nothing reads its outputs, so zeros do
            pieces.append(query.new_zeros(1, length - start, heads, dim))
        outputs.append(torch.cat(pieces, dim=1))
    return torch.cat(outputs, dim=0), None


AttentionInterface.register(NAME, packed_attention)
