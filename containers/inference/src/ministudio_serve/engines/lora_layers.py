"""Batched multi-LoRA on the base model's Linear layers (the S-LoRA/Punica approach).

Every adapted Linear keeps each resident adapter's A and B in a stacked slot tensor. Before a forward the engine
says which slot each row uses (slot 0 = the base model, all zeros); each layer gathers its rows' A/B once per
batch composition and adds `(x @ A_row) @ B_row` with two `torch.bmm`s. Rows with different adapters share one
forward, so a mixed batch costs a few small matmuls per layer instead of peft's per-adapter sub-batches (0.71x of
base throughput in FINDINGS.md).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ministudio_serve.engines.adapter_files import LoRAWeights

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRAContext:
    """The row → slot mapping of the current forward, shared by every adapted layer of one model."""

    def __init__(self) -> None:
        self.slots: torch.Tensor | None = None  # None: no row uses an adapter, layers skip the LoRA path
        self.slot_list: list[int] = []
        self.rank = 0
        self.version = 0  # bumped whenever the mapping changes, so layers re-gather only then

    def set_rows(self, slots: list[int], ranks: dict[int, int], device: torch.device) -> None:
        rank = max((ranks.get(s, 0) for s in slots), default=0)
        if slots == self.slot_list and rank == self.rank and (self.slots is not None) == any(slots):
            return
        self.slot_list = list(slots)
        self.rank = rank
        self.version += 1
        self.slots = torch.tensor(slots, dtype=torch.long, device=device) if any(slots) else None

    def invalidate(self) -> None:
        """Slot contents changed: layers must gather again even if the mapping did not."""
        self.version += 1


class BatchedLoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, ctx: LoRAContext, n_slots: int, max_rank: int) -> None:
        super().__init__()
        self.base = base
        self.ctx = ctx
        self.n_slots = n_slots
        self.max_rank = max_rank
        self.lora_a: torch.Tensor | None = None  # (n_slots + 1, in, max_rank), allocated on first use
        self.lora_b: torch.Tensor | None = None  # (n_slots + 1, max_rank, out)
        self.filled: set[int] = set()
        self._version = -1
        self._gathered: tuple[torch.Tensor, torch.Tensor] | None = None

    def set_slot(self, slot: int, a: torch.Tensor | None, b: torch.Tensor | None) -> None:
        """Write an adapter's (in, r) A and (r, out) B into slot, or clear the slot when a is None."""
        weight = self.base.weight
        if self.lora_a is None or self.lora_b is None:
            if a is None:
                return
            shape_a = (self.n_slots + 1, self.base.in_features, self.max_rank)
            shape_b = (self.n_slots + 1, self.max_rank, self.base.out_features)
            self.lora_a = torch.zeros(shape_a, dtype=weight.dtype, device=weight.device)
            self.lora_b = torch.zeros(shape_b, dtype=weight.dtype, device=weight.device)
        self.lora_a[slot].zero_()
        self.lora_b[slot].zero_()
        if a is None or b is None:
            self.filled.discard(slot)
        else:
            rank = a.shape[1]
            self.lora_a[slot, :, :rank] = a.to(weight.dtype)
            self.lora_b[slot, :rank, :] = b.to(weight.dtype)
            self.filled.add(slot)
        self._version = -1

    def _rows(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        ctx = self.ctx
        if self._version != ctx.version:
            self._version = ctx.version
            self._gathered = None
            a, b = self.lora_a, self.lora_b
            if ctx.slots is not None and a is not None and b is not None and self.filled.intersection(ctx.slot_list):
                rank = ctx.rank
                self._gathered = (
                    a.index_select(0, ctx.slots)[:, :, :rank].contiguous(),
                    b.index_select(0, ctx.slots)[:, :rank, :].contiguous(),
                )
        return self._gathered

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        rows = self._rows() if self.ctx.slots is not None else None
        if rows is None:
            return out
        a, b = rows
        if out.dim() == 2:  # decoder layers pass (rows, tokens, features); a (rows, features) input still works
            return out + torch.bmm(torch.bmm(x.unsqueeze(1), a), b).squeeze(1)
        return torch.baddbmm(out, torch.bmm(x, a), b)  # the add fused into the second matmul


def lora_targets(model: nn.Module, names: tuple[str, ...] = DEFAULT_TARGETS) -> dict[str, tuple[int, int]]:
    """Adaptable Linear modules (by the names peft saves) with their (in_features, out_features)."""
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, BatchedLoRALinear):
            found[name] = (module.base.in_features, module.base.out_features)
        elif isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in names and ".layers." in f".{name}":
            found[name] = (module.in_features, module.out_features)
    return found


def install(model: nn.Module, ctx: LoRAContext, n_slots: int, max_rank: int) -> dict[str, BatchedLoRALinear]:
    """Wrap every adaptable Linear in place; return the wrappers by the original module name."""
    layers = {}
    for name in lora_targets(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        base = getattr(parent, child)
        wrapper = BatchedLoRALinear(base, ctx, n_slots, max_rank)
        setattr(parent, child, wrapper)
        layers[name] = wrapper
    return layers


class SlotTable:
    """Which adapter lives in which slot; least recently used idle slots are reused first."""

    def __init__(self, layers: dict[str, BatchedLoRALinear], n_slots: int) -> None:
        self.layers = layers
        self.n_slots = n_slots
        self.by_uid: OrderedDict[int, int] = OrderedDict()  # adapter uid -> slot, least recently used first
        self.ranks: dict[int, int] = {}  # slot -> rank
        self.changed = False  # set when slot contents were rewritten: layers must gather again

    def slot_for(self, uid: int, weights: LoRAWeights, busy: set[int]) -> int | None:
        """The adapter's slot, loading it into a free or idle slot if needed; None while every slot is busy."""
        if uid in self.by_uid:
            self.by_uid.move_to_end(uid)
            return self.by_uid[uid]
        used = set(self.by_uid.values())
        free = [s for s in range(1, self.n_slots + 1) if s not in used]
        if free:
            slot = free[0]
        else:
            victim = next((u for u, s in self.by_uid.items() if s not in busy), None)
            if victim is None:
                return None
            slot = self.by_uid.pop(victim)
        for name, layer in self.layers.items():
            pair = weights.modules.get(name)
            if pair is not None or slot in layer.filled:
                layer.set_slot(slot, *(pair if pair is not None else (None, None)))
        self.by_uid[uid] = slot
        self.ranks[slot] = weights.rank
        self.changed = True
        return slot

    def drop(self, uid: int, busy: set[int]) -> bool:
        """Free the adapter's slot unless a running row still uses it; True when it is gone."""
        slot = self.by_uid.get(uid)
        if slot is None:
            return True
        if slot in busy:
            return False
        del self.by_uid[uid]
        self.ranks.pop(slot, None)
        for layer in self.layers.values():
            if slot in layer.filled:
                layer.set_slot(slot, None, None)
        return True
