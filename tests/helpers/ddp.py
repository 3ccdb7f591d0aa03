"""Data-parallel trainer workers without Ray: N processes started as torch's launcher starts them (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT on 127.0.0.1), each entering the trainer's launcher, which joins the gloo process group
and trains its share (the path SageMaker's instances take). Each rank may get its own spec. Test support only; torch
and the trainer are imported in the child processes."""

from __future__ import annotations

import os
from typing import Any

from functions.local.procs import free_port


def _rank(rank: int, world: int, port: int, specs: list[dict[str, Any]]) -> None:
    import torch
    from ministudio_train import cli, launcher
    from ministudio_train.spec import JobSpec

    # What torch's launcher (`python -m torch.distributed.run`) sets for each worker it starts.
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HF_HUB_OFFLINE="1")
    os.environ["MINISTUDIO_SAGEMAKER_ROOT"] = "/nonexistent-sagemaker"
    torch.set_num_threads(1)
    code = launcher.launch(JobSpec.model_validate(specs[rank]), {}, cli.StopFlag(), log_every=1)
    if code != 0:
        raise SystemExit(code)


def run_workers(specs: list[dict[str, Any]]) -> None:
    """One worker per spec (rank = its index), to the end; raises if any of them failed."""
    import torch.multiprocessing as mp

    mp.spawn(_rank, args=(len(specs), free_port(), specs), nprocs=len(specs), join=True)
