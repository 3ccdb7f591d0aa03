"""The compute backend protocol: where training runs (and, later, serving deployments) actually execute.

Backends are chosen by `COMPUTE_BACKEND` (local, ray, eks, sagemaker). Every call is keyed by a run name derived
from the job id, so submitting twice (a redelivered dispatch message, a retried Lambda) finds the first run
instead of starting a second one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

# The trainer reads the same model (containers/common; vendored into the Lambda bundle by infra/cdk/bundle.py).
from ministudio_common.spec import TrainingSpec

__all__ = ["ReportsRunExits", "RunState", "RunStatus", "TrainingBackend", "TrainingSpec", "run_name"]

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class RunState(StrEnum):
    pending = "pending"  # accepted, waiting for capacity
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    missing = "missing"  # the backend knows no run of that name

    @property
    def terminal(self) -> bool:
        return self in (RunState.succeeded, RunState.failed, RunState.cancelled)


@dataclass(frozen=True)
class RunStatus:
    name: str
    state: RunState
    message: str | None = None
    exit_code: int | None = None
    backend_id: str | None = None  # the backend's own id (Ray submission id, pid, SageMaker ARN)

    @property
    def settled(self) -> bool:
        """Nothing left to stop: the run ended or the backend knows none."""
        return self.state.terminal or self.state is RunState.missing


def stop_unless_settled(status: Callable[[str], RunStatus], run_name: str, stop: Callable[[str], None]) -> RunStatus:
    """`cancel` for a backend whose stop answers nothing: a settled run answers as it is; else `stop` it and answer
    its status then (which also says whether it ended or vanished meanwhile)."""
    current = status(run_name)
    if current.settled:
        return current
    stop(run_name)
    return status(run_name)


class TrainingBackend(Protocol):
    name: str

    def submit(self, run_name: str, spec: TrainingSpec) -> RunStatus:
        """Start (or queue) a run; if a run with this name exists, return its status and start nothing."""
        ...

    def status(self, run_name: str) -> RunStatus: ...

    def cancel(self, run_name: str) -> RunStatus:
        """Ask the run to stop (the trainer checkpoints on SIGTERM); cancelling a finished run changes nothing."""
        ...

    def logs(self, run_name: str, tail: int = 200) -> str: ...

    def cluster_status(self) -> dict[str, Any]:
        """Real capacity: CPUs, GPUs and memory, total and available, plus running/queued runs."""
        ...


@runtime_checkable
class ReportsRunExits(Protocol):
    """A backend whose runs are children of this process (local): it says at once when one ends."""

    def add_exit_listener(self, listener: Callable[[str], None]) -> None: ...


def run_name(job_id: str) -> str:
    """Backend resource name for a job: valid for Kubernetes (DNS-1123 label) and SageMaker (≤ 63 chars)."""
    name = job_id.lower().replace("_", "-")
    if not _DNS1123.fullmatch(name):
        raise ValueError(f"job id {job_id!r} does not make a DNS-1123 run name")
    return name
