"""Which multi-worker path a distributed spec takes; the training itself is the same everywhere (parallel.py).

- Started by torch's launcher (`RANK`, `WORLD_SIZE`, `LOCAL_RANK` set): this process is one worker; it joins the
  process group and trains its share.
- In a SageMaker training job (`SM_HOSTS`/`SM_CURRENT_HOST`, or /opt/ml/input/config/resourceconfig.json): this
  process, on each instance, runs torch's launcher (`torch.distributed.run`) over SageMaker's host list, one worker
  per GPU of the instance (one on CPU), the first host as the rendezvous; the workers re-read the same spec.
- Anywhere else: the Ray Train driver (distributed.py).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from ministudio_train import cli
from ministudio_train.spec import JobSpec, sagemaker_root

log = logging.getLogger("ministudio_train")
RENDEZVOUS_PORT = 29500  # torch's default; SageMaker's instances of one job reach each other on any port


def sagemaker_hosts(environ: Mapping[str, str]) -> tuple[list[str], str] | None:
    """(every host of the training job, this one), as SageMaker tells its containers; None outside SageMaker."""
    if environ.get("SM_HOSTS") and environ.get("SM_CURRENT_HOST"):
        return list(json.loads(environ["SM_HOSTS"])), environ["SM_CURRENT_HOST"]
    config = sagemaker_root(environ) / "input" / "config" / "resourceconfig.json"
    if config.is_file():
        data = json.loads(config.read_text())
        return list(data["hosts"]), str(data["current_host"])
    return None


def torchrun_command(spec: JobSpec, hosts: list[str], current: str, argv: list[str]) -> list[str]:
    """torch's launcher on this host: its node rank is its place in the sorted host list, algo-1 first."""
    hosts = sorted(hosts)
    per_host = max(1, spec.effective_compute.gpus_per_worker)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={len(hosts)}",
        f"--node-rank={hosts.index(current)}",
        f"--nproc-per-node={per_host}",
        f"--master-addr={hosts[0]}",
        f"--master-port={RENDEZVOUS_PORT}",
        "-m",
        "ministudio_train.cli",
        *argv,
    ]


def launch(spec: JobSpec, registry: dict[str, Any], stop: cli.StopFlag, log_every: int | None) -> int:
    env = os.environ
    if all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        return torchrun_worker(spec, registry, stop, log_every)
    found = sagemaker_hosts(env)
    if found is not None:
        return run_torchrun(torchrun_command(spec, *found, sys.argv[1:]), stop)
    from ministudio_train import distributed

    return distributed.run(spec, registry, stop, log_every)


def run_torchrun(command: list[str], stop: cli.StopFlag) -> int:
    """Run torch's launcher to the end; a SIGTERM (StopTrainingJob) is passed on, and the workers checkpoint."""
    log.info("starting torch's launcher: %s", " ".join(command))
    proc = subprocess.Popen(command)  # noqa: S603 - our own interpreter and module
    forwarded = False
    while True:
        try:
            code = proc.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if stop() and not forwarded:
                proc.send_signal(signal.SIGTERM)
                forwarded = True
    return cli.EXIT_OK if code == 0 else cli.EXIT_FAILED


def torchrun_worker(spec: JobSpec, registry: dict[str, Any], stop: cli.StopFlag, log_every: int | None) -> int:
    import torch
    import torch.distributed as dist

    from ministudio_train import distributed, parallel

    gpu = torch.cuda.is_available() and spec.effective_compute.gpus_per_worker > 0
    if gpu:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if gpu else "gloo")
    try:
        agreed = distributed.AgreedStop(parallel.Group.current(), lambda: stop.signum)
        return distributed.run_worker(spec, agreed, registry, log_every)
    finally:
        dist.destroy_process_group()
