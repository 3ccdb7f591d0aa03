"""What a fine-tuning job trains on: the `compute` extension of job create (`{"workers": N, "gpus_per_worker": G}`,
the OpenAI SDK's `extra_body`), filled in from the base model's catalogue entry, and checked against what the
backend says it has (`cluster-status`): asking for more than exists is a 400 naming the limit, not a job that waits
forever for capacity that will never come."""

from __future__ import annotations

from typing import Any

from ministudio_common.spec import Compute
from pydantic import ValidationError

from functions.compute.base import TrainingBackend
from functions.core import catalogue
from functions.core.errors import InvalidRequest


def resolve(model: str, asked: dict[str, Any] | None) -> Compute:
    """The catalogue's default for `model`, with what the request asked for on top."""
    default = catalogue.default_compute(model)
    if not asked:
        return default
    if not isinstance(asked, dict):
        raise InvalidRequest('compute must be an object such as {"workers": 2, "gpus_per_worker": 1}', "compute")
    try:
        chosen = Compute.model_validate({**default.model_dump(), **asked})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"compute.{field}: {first['msg']}", param=f"compute.{field}") from None
    if default.strategy == "fsdp" and (chosen.strategy != "fsdp" or not chosen.distributed):
        raise InvalidRequest(
            f"compute.strategy: {model} needs about {catalogue.memory_gb(model):g} GB to fine-tune, more than one "
            'GPU holds: it trains sharded ("strategy": "fsdp") over more than one process',
            param="compute.strategy",
        )
    return chosen


def needs_check(compute: Compute) -> bool:
    """One CPU process is what every backend can run: only more than that is checked against capacity."""
    return compute.distributed or compute.gpus > 0


def check_capacity(backend: TrainingBackend, compute: Compute) -> None:
    if needs_check(compute):
        check(compute, backend.cluster_status())


def check(compute: Compute, status: dict[str, Any]) -> None:
    """Refuse what the backend cannot hold even when idle. Unknown figures (a Ray head not reporting yet, SageMaker's
    missing quota) refuse nothing: the backend then has the last word."""
    gpus = _number((status.get("gpu") or {}).get("total"))
    if compute.gpus and gpus is not None and compute.gpus > gpus:
        raise InvalidRequest(
            f"compute asks for {compute.gpus} GPUs ({compute.workers} workers x {compute.gpus_per_worker}); "
            f"the {status.get('backend', 'cluster')} backend has {gpus:g} in all (cluster-status gpu.total)",
            param="compute",
        )
    nodes = [_number(n.get("total")) for n in (status.get("gpu") or {}).get("nodes") or []]
    largest = max((n for n in nodes if n is not None), default=None)
    if compute.gpus_per_worker and largest is not None and compute.gpus_per_worker > largest:
        raise InvalidRequest(
            f"compute asks for {compute.gpus_per_worker} GPUs per worker; the largest node has {largest:g} "
            "(cluster-status gpu.nodes)",
            param="compute.gpus_per_worker",
        )
    cpus = _number((status.get("cpu") or {}).get("total"))
    wanted = compute.processes * compute.cpus_per_worker
    if cpus is not None and wanted > cpus:
        raise InvalidRequest(
            f"compute asks for {wanted} CPUs ({compute.processes} trainer processes x {compute.cpus_per_worker}); "
            f"the {status.get('backend', 'cluster')} backend has {cpus:g} in all (cluster-status cpu.total)",
            param="compute",
        )
    quota = status.get("quota") or {}
    instances = _number(quota.get("value"))
    if instances is not None and compute.workers > instances:
        raise InvalidRequest(
            f"compute asks for {compute.workers} instances; the account's quota {quota.get('name')!r} is "
            f"{instances:g} (cluster-status quota.value)",
            param="compute.workers",
        )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
