"""Reuse the KV cache of prompt prefixes seen before (vLLM calls it automatic prefix caching).

Chat requests all start with the same template and system prompt, and on a CPU prefill is compute-bound
(FINDINGS.md: 8 prompts take ~320 ms): skipping the shared part shortens every newcomer's prefill, which is time the
running rows otherwise wait. Prefixes are keyed by adapter (a LoRA on k/v changes the cache) and by the token ids of
whole blocks, so a lookup is a dictionary probe per block; entries are evicted least recently used by token count.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per model layer: keys and values, (1, heads, tokens, dim)


class PrefixCache:
    def __init__(self, block: int = 16, capacity_tokens: int = 2048) -> None:
        self.block = block
        self.capacity = capacity_tokens
        self._stored: OrderedDict[tuple[int, tuple[int, ...]], Layers] = OrderedDict()  # longest prefix -> its KV
        self._index: dict[tuple[int, tuple[int, ...]], tuple[int, tuple[int, ...]]] = {}  # any block prefix -> stored
        self._tokens = 0
        self.hits = 0
        self.hit_tokens = 0

    def _usable(self, length: int) -> int:
        # At least one prompt token must stay to be prefilled: its logits give the first token.
        return ((length - 1) // self.block) * self.block if self.block else 0

    def lookup(self, adapter: int, ids: list[int]) -> tuple[int, Layers] | None:
        if not self.block:
            return None
        for size in range(self._usable(len(ids)), 0, -self.block):
            owner = self._index.get((adapter, tuple(ids[:size])))
            if owner is not None and owner in self._stored:
                self._stored.move_to_end(owner)
                self.hits += 1
                self.hit_tokens += size
                return size, [(k[:, :, :size], v[:, :, :size]) for k, v in self._stored[owner]]
        return None

    def store(self, adapter: int, ids: list[int], layers: Layers) -> None:
        """Keep the KV of ids' block-aligned prefix; layers hold the prompt's real tokens only, in order."""
        size = self._usable(len(ids))
        if size == 0 or size > self.capacity:
            return
        key = (adapter, tuple(ids[:size]))
        if key in self._stored:
            self._stored.move_to_end(key)
            return
        self._stored[key] = [(k[:, :, :size].clone(), v[:, :, :size].clone()) for k, v in layers]
        self._tokens += size
        for prefix in range(self.block, size + 1, self.block):
            self._index[(adapter, tuple(ids[:prefix]))] = key
        while self._tokens > self.capacity:
            old, _ = self._stored.popitem(last=False)
            self._tokens -= len(old[1])
            self._index = {k: v for k, v in self._index.items() if v != old}

    def store_batch(self, adapters: list[int], prompts: list[list[int]], mask: torch.Tensor, layers: Layers) -> None:
        """Store each prefilled row's prompt, picking its real tokens out of the left-padded batch cache."""
        for i, (adapter, ids) in enumerate(zip(adapters, prompts, strict=True)):
            if self._usable(len(ids)) == 0:
                continue
            real = mask[i].nonzero().squeeze(1)
            self.store(
                adapter,
                ids,
                [(k[i : i + 1].index_select(2, real), v[i : i + 1].index_select(2, real)) for k, v in layers],
            )

    def forget(self, adapter: int) -> None:
        """An adapter was unloaded: its prefixes can never be used again."""
        for key in [k for k in self._stored if k[0] == adapter]:
            self._tokens -= len(key[1])
            del self._stored[key]
        self._index = {k: v for k, v in self._index.items() if v[0] != adapter}


def assemble(hits: list[tuple[int, Layers] | None], device: torch.device) -> tuple[torch.Tensor, Layers]:
    """The cached prefixes of a prefill batch, left-padded to the longest: (mask, per-layer keys and values)."""
    width = max(hit[0] if hit else 0 for hit in hits)
    sample = next(hit[1] for hit in hits if hit)
    mask = torch.zeros((len(hits), width), dtype=torch.long, device=device)
    for i, hit in enumerate(hits):
        if hit:
            mask[i, width - hit[0] :] = 1
    layers = []
    for layer, (k0, v0) in enumerate(sample):
        keys = k0.new_zeros((len(hits), k0.shape[1], width, k0.shape[3]))
        values = v0.new_zeros((len(hits), v0.shape[1], width, v0.shape[3]))
        for i, hit in enumerate(hits):
            if hit:
                keys[i, :, width - hit[0] :] = hit[1][layer][0][0]
                values[i, :, width - hit[0] :] = hit[1][layer][1][0]
        layers.append((keys, values))
    return mask, layers
