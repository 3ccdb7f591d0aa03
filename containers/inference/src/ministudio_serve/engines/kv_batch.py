"""The running batch's KV cache: left-padded rows that can join and leave between decode steps.

Rows are aligned on the right (the newest token of every row is the last column), padding sits on the left and the
attention mask hides it. A new group of prefilled rows is merged by left-padding whichever side is shorter; rows
that finish are dropped and the columns no remaining row needs are trimmed from the left. Each layer writes into a
buffer with spare capacity, so a decode step appends in place instead of copying the whole cache (`torch.cat` in
transformers' DynamicLayer copies every layer's keys and values at every step).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

_GROW = 64


class GrowableLayer(DynamicLayer):
    """A DynamicLayer whose keys/values are views into a buffer that grows in chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.length = 0
        self.buf_k: torch.Tensor | None = None
        self.buf_v: torch.Tensor | None = None

    def set(self, keys: torch.Tensor, values: torch.Tensor, spare: int = _GROW) -> None:
        batch, heads, length, dim = keys.shape
        self.buf_k = keys.new_empty((batch, heads, length + spare, dim))
        self.buf_v = values.new_empty((batch, heads, length + spare, dim))
        self.buf_k[:, :, :length] = keys
        self.buf_v[:, :, :length] = values
        self.length = length
        self.device = keys.device
        self.is_initialized = True
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self.kv()

    def kv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached keys and values (views into the buffers)."""
        assert self.buf_k is not None and self.buf_v is not None
        return self.buf_k[:, :, : self.length], self.buf_v[:, :, : self.length]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.buf_k is None or self.buf_v is None:
            self.set(key_states, value_states)
            return self.kv()
        new = key_states.shape[-2]
        if self.length + new > self.buf_k.shape[-2]:
            self.set(*self.kv(), spare=max(_GROW, new))
            assert self.buf_k is not None and self.buf_v is not None
        self.buf_k[:, :, self.length : self.length + new] = key_states
        self.buf_v[:, :, self.length : self.length + new] = value_states
        self.length += new
        self._views()
        return self.kv()

    def get_seq_length(self) -> int:
        return self.length


def new_cache(config: Any) -> DynamicCache:
    cache = DynamicCache(config=config)
    cache.layers = [GrowableLayer() for _ in cache.layers]
    return cache


def left_padded(prompts: list[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask for prompts aligned on the right, as the batch keeps its rows."""
    width = max(len(prompt) for prompt in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids[i, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[i, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


def _layers(cache: DynamicCache) -> list[GrowableLayer]:
    return [layer for layer in cache.layers if isinstance(layer, GrowableLayer)]


def _pad_left(tensor: torch.Tensor, amount: int, dim: int) -> torch.Tensor:
    if amount == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = amount
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class KVBatch:
    """A DynamicCache of GrowableLayers plus the (rows, columns) attention mask that goes with it."""

    def __init__(self, cache: DynamicCache, mask: torch.Tensor) -> None:
        self.cache = cache
        self.mask = mask  # (rows, cached columns), 1 where a real token is cached

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    @property
    def columns(self) -> int:
        return int(self.mask.shape[1])

    def merge(self, other: KVBatch) -> None:
        """Append other's rows below ours, left-padding whichever side has fewer columns."""
        width = max(self.columns, other.columns)
        mine, theirs = width - self.columns, width - other.columns
        for layer, new in zip(_layers(self.cache), _layers(other.cache), strict=True):
            (k1, v1), (k2, v2) = layer.kv(), new.kv()
            keys = torch.cat([_pad_left(k1, mine, 2), _pad_left(k2, theirs, 2)], dim=0)
            values = torch.cat([_pad_left(v1, mine, 2), _pad_left(v2, theirs, 2)], dim=0)
            layer.set(keys, values)
        self.mask = torch.cat([_pad_left(self.mask, mine, 1), _pad_left(other.mask, theirs, 1)], dim=0)

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows, then drop the left columns that are padding for every remaining row."""
        index = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        start = int(used[0]) if used.numel() else mask.shape[1]
        self.mask = mask[:, start:].contiguous()
        for layer in _layers(self.cache):
            keys, values = layer.kv()
            layer.set(keys.index_select(0, index)[:, :, start:], values.index_select(0, index)[:, :, start:])

    def extend_mask(self) -> torch.Tensor:
        """The mask for a decode step: every row adds one real token."""
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.rows, 1))], dim=1)
        return self.mask
