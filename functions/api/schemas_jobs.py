"""Bodies of the fine-tuning and model routes: OpenAI's FineTuningJob, events, checkpoints and Model, plus seed 001's
FineTuningJobRequest."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from functions.api.schemas import Strict
from functions.core.models import Checkpoint, Job, JobEvent
from functions.models.service import ModelCard

Auto = Literal["auto"]


class SupervisedHyperparameters(BaseModel):
    model_config = {"extra": "allow"}  # Mini Studio's LoRA settings ride along with OpenAI's three

    n_epochs: Auto | int = "auto"
    batch_size: Auto | int = "auto"
    learning_rate_multiplier: Auto | float = "auto"


class Supervised(BaseModel):
    hyperparameters: dict[str, Any] = {}  # copied per instance; default_factory=dict costs import time (inspect)


class Method(BaseModel):
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: Supervised | None = None


class JobCreate(BaseModel):
    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: dict[str, Any] | None = None
    method: Method | None = None
    suffix: str | None = None
    seed: int | None = None
    metadata: dict[str, str] | None = None
    integrations: list[dict[str, Any]] | None = None
    # Mini Studio's extension (the SDK's extra_body): {"workers": N, "gpus_per_worker": G}; default: the model's
    compute: dict[str, Any] | None = None


class JobError(BaseModel):
    code: str
    message: str
    param: str | None


class JobOut(BaseModel):
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    id: str
    created_at: int
    error: JobError | None
    fine_tuned_model: str | None
    finished_at: int | None
    hyperparameters: SupervisedHyperparameters
    model: str
    organization_id: str
    result_files: list[str]
    status: Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    integrations: list[dict[str, Any]] = []
    seed: int
    estimated_finish: int | None
    method: dict[str, Any]
    metadata: dict[str, str] | None
    suffix: str | None = None
    progress: dict[str, Any] | None = None
    compute: dict[str, Any] | None = None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        shown = {**job.hyperparameters, **job.resolved_hyperparameters}
        return cls(
            id=job.id,
            created_at=job.created_at,
            error=JobError(**job.error) if job.error else None,
            fine_tuned_model=job.fine_tuned_model,
            finished_at=job.finished_at,
            hyperparameters=SupervisedHyperparameters(**shown),
            model=job.model,
            organization_id=job.client_code,
            result_files=job.result_files,
            status=job.status.public,
            trained_tokens=job.trained_tokens,
            training_file=job.training_file,
            validation_file=job.validation_file,
            seed=job.seed,
            estimated_finish=job.estimated_finish,
            method={"type": "supervised", "supervised": {"hyperparameters": shown}},
            metadata=job.metadata,
            suffix=job.suffix,
            progress=job.progress,
            compute=job.compute,
        )


class EventOut(BaseModel):
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    id: str
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"]
    data: dict[str, Any]

    @classmethod
    def of(cls, e: JobEvent) -> EventOut:
        return cls(id=e.id, created_at=e.created_at, level=e.level, message=e.message, type=e.type, data=e.data)


class CheckpointOut(BaseModel):
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    id: str
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, Any]
    step_number: int

    @classmethod
    def of(cls, c: Checkpoint) -> CheckpointOut:
        return cls(
            id=c.id,
            created_at=c.created_at,
            fine_tuned_model_checkpoint=c.fine_tuned_model_checkpoint,
            fine_tuning_job_id=c.job_id,
            metrics={k: v for k, v in c.metrics.items() if v is not None},
            step_number=c.step_number,
        )


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str

    @classmethod
    def of(cls, m: ModelCard) -> ModelOut:
        return cls(id=m.id, created=m.created, owned_by=m.owned_by)


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool


# --- seed 001 ------------------------------------------------------------------------------------------------
class SeedJobRequest(Strict):
    """Seed 001's FineTuningJobRequest."""

    model: str
    dataset_filename: str = Field(description="a dataset id, an S3 key (or s3:// URI) or a path under DFS_BASE_PATH")
    client_code: str = ""
    n_epochs: int | None = None
    batch_size: int | None = None
    prompt_loss_weight: float | None = None
    learning_rate_multiplier: float | None = None


class SeedJobOut(JobOut):
    job_id: str
    client_code: str
    dataset_filename: str


class SeedJob(BaseModel):
    ok: Literal[True] = True
    job: SeedJobOut


class SeedJobs(BaseModel):
    ok: Literal[True] = True
    jobs: list[SeedJobOut]


class SeedClusterStatus(BaseModel):
    ok: Literal[True] = True
    status: dict[str, Any]


def seed_job(job: Job, dataset_filename: str | None = None) -> SeedJobOut:
    base = JobOut.of(job).model_dump()
    return SeedJobOut(
        **base, job_id=job.id, client_code=job.client_code, dataset_filename=dataset_filename or job.training_file
    )
