"""Domain records as stored in MongoDB (`_id` is the record's public id) and the statuses they move through."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def now() -> int:
    return int(time.time())


class DatasetStatus(StrEnum):
    uploaded = "uploaded"
    validating = "validating"
    validated = "validated"
    invalid = "invalid"


class UploadStatus(StrEnum):
    pending = "pending"
    completed = "completed"
    cancelled = "cancelled"
    expired = "expired"


class JobStatus(StrEnum):
    validating_files = "validating_files"
    queued = "queued"
    dispatching = "dispatching"  # internal: the dispatch worker is submitting it (OpenAI sees "queued")
    running = "running"
    cancelling = "cancelling"  # internal: the run was asked to stop (OpenAI sees "running")
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)

    @property
    def public(self) -> str:
        return {"dispatching": "queued", "cancelling": "running"}.get(self.value, self.value)


class Record(BaseModel):
    # Built on first use, not at import: the API registers no route with these (bench/cold_start.py).
    model_config = ConfigDict(populate_by_name=True, extra="ignore", defer_build=True)

    id: str = Field(alias="_id")

    def doc(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


class Tenant(Record):
    """`_id` is the client_code."""

    created_at: int = Field(default_factory=now)
    status: str = "active"
    config: dict[str, Any] = Field(default_factory=dict)

    @property
    def client_code(self) -> str:
        return self.id

    @property
    def rate_limit_per_minute(self) -> int | None:
        value = self.config.get("rate_limit_per_minute")
        return int(value) if value is not None else None


class ApiKey(Record):
    client_code: str
    key_hash: str
    prefix: str
    name: str | None = None
    created_at: int = Field(default_factory=now)
    revoked_at: int | None = None


class Dataset(Record):
    """A training file. OpenAI calls it a File; seed 001 calls it a dataset (collection fine_tuning_datasets)."""

    client_code: str
    filename: str
    purpose: str = "fine-tune"
    bucket: str
    s3_key: str
    bytes: int = 0
    dfs_path: str | None = None
    source: str  # api | seed | upload | incoming
    status: DatasetStatus = DatasetStatus.uploaded
    created_at: int = Field(default_factory=now)
    seq: int = Field(default_factory=time.time_ns)  # creation order within a second, for pagination
    validated_at: int | None = None
    validation: dict[str, Any] | None = None


class Upload(Record):
    client_code: str
    filename: str
    purpose: str
    bytes: int
    mime_type: str
    bucket: str
    key: str  # where the presigned POST or the assembled parts land
    file_id: str  # the Dataset this upload becomes
    status: UploadStatus = UploadStatus.pending
    parts: list[dict[str, Any]] = Field(default_factory=list)
    created_at: int = Field(default_factory=now)
    seq: int = Field(default_factory=time.time_ns)
    expires_at: int


class Job(Record):
    client_code: str
    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)  # as asked: values or "auto"
    resolved_hyperparameters: dict[str, Any] = Field(default_factory=dict)  # what the trainer used
    suffix: str | None = None
    seed: int = 0
    metadata: dict[str, str] | None = None
    status: JobStatus = JobStatus.queued
    created_at: int = Field(default_factory=now)
    seq: int = Field(default_factory=time.time_ns)
    updated_at: int = Field(default_factory=now)
    started_at: int | None = None
    finished_at: int | None = None
    deadline_at: int | None = None
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    estimated_finish: int | None = None
    error: dict[str, Any] | None = None
    result_files: list[str] = Field(default_factory=list)
    backend: str = "local"
    run_name: str | None = None
    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None  # the trainer's result.json
    idempotency_key: str | None = None
    source: str = "api"  # api | seed
    dataset_ref: str | None = None  # seed 001's dataset_filename as given
    compute: dict[str, Any] | None = None  # workers, GPUs per worker... (ministudio_common.spec.Compute)


class JobEvent(Record):
    job_id: str
    client_code: str
    created_at: int = Field(default_factory=now)
    seq: int = Field(default_factory=time.time_ns)
    level: str = "info"
    message: str
    type: str = "message"
    data: dict[str, Any] = Field(default_factory=dict)


class Checkpoint(Record):
    job_id: str
    client_code: str
    created_at: int = Field(default_factory=now)
    seq: int = Field(default_factory=time.time_ns)
    step_number: int
    metrics: dict[str, Any] = Field(default_factory=dict)
    fine_tuned_model_checkpoint: str
    uri: str


class FineTunedModel(Record):
    """`_id` is `ft:{base}:{tenant}:{suffix}:{job_id}`."""

    client_code: str
    base_model: str
    job_id: str
    adapter_uri: str
    created_at: int = Field(default_factory=now)


class DeploymentStatus(StrEnum):
    pending = "pending"
    deploying = "deploying"
    ready = "ready"
    failed = "failed"
    deleting = "deleting"
    deleted = "deleted"
    idle = "idle"  # scaled to zero after `idle_seconds` without requests; the next request wakes it

    @property
    def live(self) -> bool:
        d = DeploymentStatus
        return self in (d.pending, d.deploying, d.ready, d.idle)


class Deployment(Record):
    """A tenant's served model. `kind` base: its own server for a base model; fine_tuned: an adapter, either on a
    host deployment of its base model (`host_id`, possibly another tenant's: many tenants' adapters share one server)
    or on its own server (`dedicated`)."""

    client_code: str
    model: str  # what clients send as `model`: the base id or the ft: id
    base_model: str
    kind: str = "base"  # base | fine_tuned
    profile: str = "llm"  # the server it runs (functions.core.model_kinds.profile_of): llm | tabular
    dedicated: bool = True  # owns a backend resource (`name`); False: rides on `host_id`'s
    name: str  # backend resource name (the host's for a shared adapter)
    host_id: str | None = None
    adapter_uri: str | None = None
    gpu_count: int = 1
    min_replicas: int = 1
    max_replicas: int = 1
    prometheus_threshold: float = 5.0
    idle_seconds: int = 900  # with min_replicas 0: scaled to zero after this long without requests
    status: DeploymentStatus = DeploymentStatus.pending
    backend: str = "local"
    endpoint: dict[str, Any] | None = None  # functions.compute.serving.Endpoint as a dict
    replicas: int = 0
    ready_replicas: int = 0
    adapters: list[str] = Field(default_factory=list)
    error: dict[str, Any] | None = None
    status_message: str | None = None  # why it is where it is, e.g. restarting after its server exited
    source: str = "api"  # api | seed
    created_at: int = Field(default_factory=now)
    updated_at: int = Field(default_factory=now)
    seq: int = Field(default_factory=time.time_ns)
    ready_at: int | None = None
    woken_at: int | None = None  # when a request last woke it from `idle` (its start is timed from then)
    deleted_at: int | None = None


class InferenceLog(Record):
    """One proxied inference request (the control plane's log for /v1/usage and /v1/logs)."""

    client_code: str
    model: str
    deployment_id: str | None = None
    route: str
    user: str | None = None  # X-User-ID or the OpenAI `user` field: a label, never authority
    status_code: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    stream: bool = False
    error: str | None = None
    request_id: str | None = None
    created_at: int = Field(default_factory=now)
    seq: int = Field(default_factory=time.time_ns)
