"""Sharded training (`compute.strategy: "fsdp"`): the model wrapped with PyTorch FSDP2 (`fully_shard`), for a base
model that does not fit one device. The trainer's code path stays the one of parallel.py: each worker trains its
share of every step, the loss is scaled the same way, and FSDP's reduce-scatter averages the gradients (so the
step's flat all-reduce is skipped). What changes:

- every decoder layer, then the whole model, is sharded over the workers (gloo on CPU, NCCL on GPU): each holds
  1/N of the weights, LoRA's included, and gathers a layer's only while it runs it;
- every worker must run every forward (its all-gathers are collective), so a worker whose share of a step is empty
  runs a one-example `filler` whose loss counts zero;
- saving gathers the full trainable state (the adapter and AdamW's state) to rank 0's CPU, on every rank, before
  rank 0 alone writes it; resuming loads that full state on every rank, and each keeps its own shard.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ministudio_train import batching, parallel
from ministudio_train.errors import TrainError

log = logging.getLogger("ministudio_train")


def _options(cpu_offload: bool = False, strict: bool = True) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, ignore_frozen_params=True, cpu_offload=cpu_offload, strict=strict)


class FullOptimizer:
    """The optimizer as resume.py sees it: the full state gathered by `Sharded.gather`, loaded back sharded."""

    def __init__(self, model: Any, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer
        self.full: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        return self.full

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        set_optimizer_state_dict(self.model, self.optimizer, state, options=_options())


class Sharded:
    def __init__(self, model: Any, filler: batching.Batch) -> None:
        self.model, self.filler = model, filler

    def gather(self, trainers: dict[str, Any]) -> dict[str, Any]:
        """The full trainable weights (and the optimizer's full state, kept in its FullOptimizer) on rank 0's CPU;
        empty elsewhere. Collective: every rank calls it."""
        from torch.distributed.checkpoint.state_dict import get_state_dict

        holder: FullOptimizer = trainers["optimizer"]
        weights, holder.full = get_state_dict(self.model, holder.optimizer, options=_options(cpu_offload=True))
        return weights

    def load_adapter(self, adapter: dict[str, torch.Tensor]) -> None:
        """A saved adapter (peft's key names) into the sharded model: each rank keeps its shard of it."""
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        named: dict[str, Any] = {k.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default."): v
                 for k, v in adapter.items()}  # fmt: skip
        missing = set(named) - {n for n, _ in self.model.named_parameters()}
        if missing:
            raise TrainError(
                "internal_error", f"the checkpoint's adapter names weights this model lacks: {sorted(missing)[:3]}"
            )
        set_model_state_dict(self.model, named, options=_options(strict=False))

    def forward(self, batch: batching.Batch | None, device: torch.device) -> torch.Tensor:
        """This worker's share's loss, or the filler's counting zero when the share is empty or weighs nothing."""
        if batch is not None and float(batch.weights.sum()) > 0:
            return batching.forward_loss(self.model, batch.to(device))
        return batching.forward_loss(self.model, self.filler.to(device)) * 0.0


def wanted(strategy: str, group: parallel.Group) -> bool:
    """FSDP when asked for and there is more than one worker to shard over (one process trains as ddp does)."""
    return strategy == "fsdp" and group.world > 1


def setup(group: parallel.Group, model: Any, filler: batching.Batch, device: torch.device) -> Sharded:
    """Shard `model` (loaded on the CPU) over the workers: each decoder layer, then the rest. FSDP moves each
    layer to `device` as it shards it, so a GPU holds one whole layer at most, never the whole model."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    group.broadcast([p for p in model.parameters() if p.requires_grad])  # rank 0's LoRA init, before sharding
    whole = sum(p.nbytes for p in model.parameters())
    mesh = init_device_mesh(device.type if dist.get_backend() == "nccl" else "cpu", (group.world,))
    layers = set(getattr(model.get_base_model(), "_no_split_modules", None) or [])
    for module in list(model.modules()):
        if type(module).__name__ in layers:  # each decoder layer its own unit: gathered only while it runs
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    held = sum(p.to_local().nbytes if hasattr(p, "to_local") else p.nbytes for p in model.parameters())
    log.info(
        "FSDP over %d workers: this one holds %.1f MB of the model's %.1f MB", group.world, held / 1e6, whole / 1e6
    )
    return Sharded(model, filler)
