"""One training step, for one process or for N data-parallel workers: the same code path either way.

With N workers (a torch.distributed process group, which Ray Train's TorchTrainer or torch's launcher sets up), each
step's examples, the seeded order's `batch_size` of them, are dealt out by position (`indices[rank::world]`), so an
epoch shows every example to exactly one worker and the global batch stays `batch_size`. The loss stays the one a
single process computes: a step's loss is the weighted mean over the whole global batch (Σ weight·CE / Σ weight), so
each worker scales its share by its weight against the global weight before the backward pass, and the gradients
are averaged across workers as DistributedDataParallel does (one flat all-reduce of the LoRA gradients: they are a
few MB, and a worker whose share is empty or carries no weight still takes part). Every worker then clips and steps
the same averaged gradients, so the adapters stay identical; the reported loss and token counts are sums over the
workers. Packing and the prompt-loss weight act within each worker's share exactly as within one process's batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, cast

import torch

from ministudio_train import batching


@dataclass(frozen=True)
class Group:
    """This process's place among the workers; rank 0 (the chief) alone writes outputs."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> Group:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def chief(self) -> bool:
        return self.rank == 0

    def shard(self, indices: Sequence[int]) -> list[int]:
        return list(indices[self.rank :: self.world])

    def _device(self) -> torch.device:
        import torch.distributed as dist

        nccl = dist.get_backend() == "nccl"  # NCCL reduces CUDA tensors only
        return torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")

    def sum(self, values: Sequence[float]) -> list[float]:
        """Each value summed over the workers (one all-reduce); the values themselves with one worker."""
        if self.world == 1:
            return list(values)
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.float64, device=self._device())
        dist.all_reduce(tensor)
        return [float(v) for v in tensor.cpu()]

    def agreed(self, stop: Callable[[], bool]) -> Callable[[], bool]:
        """A stop flag every worker reads the same at the same call: one worker told to stop stops them all at
        the same step (a worker leaving alone would leave the others waiting in an all-reduce)."""
        if self.world == 1:
            return stop
        return lambda: self.sum([1.0 if stop() else 0.0])[0] > 0

    def broadcast(self, params: Sequence[torch.Tensor]) -> None:
        """Rank 0's values everywhere (as DDP does when it wraps a model)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        device = self._device()  # NCCL sends CUDA tensors only: a CPU one (before FSDP places it) goes via the GPU
        for param in params:
            if param.device == device:
                dist.broadcast(param.data, src=0)
            else:
                moved = param.data.to(device)
                dist.broadcast(moved, src=0)
                param.data.copy_(moved)

    def chief_says(self, value: Any) -> Any:
        """Rank 0's `value` (any picklable object) on every worker: one decision for all, such as which checkpoint
        to resume from (loading one into FSDP's shards is collective: every worker must load the same)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0, device=self._device())
        return box[0]

    def average_grads(self, params: Sequence[torch.Tensor]) -> bool:
        """Average the gradients across workers (a missing one counts as zeros); False when no worker has any."""
        has = any(p.grad is not None for p in params)
        if self.world == 1:
            return has
        import torch.distributed as dist

        if not self.sum([1.0 if has else 0.0])[0]:
            return False
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        at = 0
        for param in params:
            n = param.numel()
            param.grad = flat[at : at + n].view_as(param).clone()
            at += n
        return True


def share_loss(model: Any, batch: batching.Batch | None, device: torch.device, sharded: Any = None) -> Any:
    """This worker's share's loss, None when the share weighs nothing. Under FSDP (`sharded`) every worker runs
    every forward, its all-gathers being collective: an empty share runs a filler whose loss counts zero."""
    if sharded is not None:
        return sharded.forward(batch, device)
    if batch is None or not float(batch.weights.sum()):
        return None
    return batching.forward_loss(model, batch.to(device))


def step(
    group: Group,
    model: Any,
    batch: batching.Batch | None,
    autocast: Callable[[], AbstractContextManager[Any]],
    device: torch.device,
    params: list[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    sharded: Any = None,
) -> tuple[float, int]:
    """Forward, backward, gradient averaging, clipping and the optimizer step; returns (the global batch's loss,
    its real tokens). `batch` is this worker's share of the step, None when the share is empty. `sharded` (a
    sharding.Sharded, FSDP): every worker runs a forward, and FSDP itself averages the gradients."""
    weight = float(batch.weights.sum()) if batch is not None else 0.0
    tokens = batch.real_tokens if batch is not None else 0
    total = group.sum([weight])[0] if group.world > 1 else weight
    loss_value = 0.0
    if sharded is not None or (batch is not None and (weight > 0 or group.world == 1)):
        with autocast():
            if sharded is not None:  # every worker runs a forward, its own share or the filler
                loss = sharded.forward(batch, device)
            else:  # a share to train on, by the condition above
                loss = batching.forward_loss(model, cast(batching.Batch, batch).to(device))
        if group.world > 1:
            # its share of Σ weight·CE / Σ weight, times the mean's N (nothing when no worker's share weighs anything)
            loss = loss * (weight * group.world / total if total else 0.0)
        if loss.requires_grad:
            (scaler.scale(loss) if scaler else loss).backward()
        loss_value = float(loss.detach()) / group.world
    if sharded is not None or group.average_grads(params):
        if scaler:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if group.world == 1:
        return loss_value, tokens
    loss_sum, token_sum = group.sum([loss_value, float(tokens)])
    return loss_sum, int(token_sum)
