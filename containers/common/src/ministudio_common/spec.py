"""The training job spec: the one model the control plane builds and the trainer reads (`--spec-json`, a file,
`$MINISTUDIO_JOB_SPEC`, or SageMaker's hyperparameters).

This module imports pydantic and the standard library only: the Lambda bundle vendors it beside `functions`
(infra/cdk/bundle.py), where neither torch nor transformers exist. JSON-able, no secrets.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_SEED = 42
MAX_SEED = 2**31 - 1  # what OpenAI's API accepts, and what the control plane checks at job creation
MAX_WORKERS, MAX_GPUS_PER_WORKER = 64, 8


class Compute(BaseModel):
    """Where a job trains: `workers` machines (a Ray worker pod, a SageMaker instance, or processes on one machine)
    with `gpus_per_worker` GPUs each. Every GPU gets one data-parallel trainer process (one process per worker on
    CPU), through Ray Train, or torch's launcher on SageMaker. One process is the plain single-process trainer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int = Field(1, ge=1, le=MAX_WORKERS)
    gpus_per_worker: int = Field(0, ge=0, le=MAX_GPUS_PER_WORKER)
    cpus_per_worker: int = Field(1, ge=1, le=256)  # per trainer process
    # ddp: every process holds the whole model and its own share of each step's examples. fsdp: the same, with the
    # model's weights sharded over the processes (PyTorch FSDP2), for a model that does not fit one device; with one
    # process there is nothing to shard, and it trains as ddp does.
    strategy: Literal["ddp", "fsdp"] = "ddp"

    @property
    def gpus(self) -> int:
        return self.workers * self.gpus_per_worker

    @property
    def processes(self) -> int:
        return self.workers * max(1, self.gpus_per_worker)

    @property
    def distributed(self) -> bool:
        return self.processes > 1


class TrainingSpec(BaseModel):
    """Everything `ministudio-train` needs. Unknown fields are refused, so a misspelt one cannot be ignored."""

    # Numbers are accepted for strings: SageMaker hands values back JSON-decoded, so a suffix "123" may come as 123.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    job_id: str = Field(min_length=1)
    tenant: str = ""  # empty for a trainer run by hand: it then names no fine-tuned model
    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)  # s3://bucket/key or a local path
    output: str = Field(min_length=1)  # s3://bucket/artifacts/{tenant}/{job_id}/ or a local directory
    validation_file: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)  # values are checked by the trainer (hyper.py)
    seed: int = Field(DEFAULT_SEED, ge=0, le=MAX_SEED)
    suffix: str | None = None
    compute: Compute | None = None  # None: one process, as `Compute()`

    @property
    def effective_compute(self) -> Compute:
        return self.compute or Compute()

    @field_validator("validation_file", "suffix", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def fine_tuned_model(self) -> str | None:
        if not self.tenant or not self.job_id:
            return None
        return f"ft:{self.model}:{self.tenant}:{self.suffix or ''}:{self.job_id}"


FIELDS: tuple[str, ...] = tuple(TrainingSpec.model_fields)
