"""Bodies of the deployment, inference proxy, usage and log routes (Mini Studio's own /v1 resources follow OpenAI's
conventions: `object`, `id`, `created_at` in seconds, lists with `has_more`, `first_id`, `last_id`), and seed 001's
deploy requests."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from functions.core.models import Deployment, DeploymentStatus, InferenceLog
from functions.deployments.public import shown_name
from functions.deployments.usage import ModelUsage, Usage


class DeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        description="A base model id, a fine-tuned `ft:` model of yours (served as a LoRA adapter), the embedding "
        "model `sentence-transformers/all-MiniLM-L6-v2`, or `tabular` (seed 004's classical models)"
    )
    gpu_count: int = 1
    min_replicas: int = 1
    max_replicas: int = 1
    prometheus_threshold: float = 5.0
    idle_seconds: int | None = Field(
        None,
        description="With `min_replicas: 0`: after this many seconds without requests the deployment scales to zero "
        "(status `idle`) and the next request wakes it (held up to WAKE_TIMEOUT_SECONDS). Default: "
        "DEPLOYMENT_IDLE_SECONDS (900)",
    )
    dedicated: bool = Field(False, description="Fine-tuned models: a server of its own instead of sharing one")


class DeploymentScale(BaseModel):
    """Either bound may be left out: it keeps its current value."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int | None = None
    max_replicas: int | None = None


class DeploymentError(BaseModel):
    code: str
    message: str


class DeploymentOut(BaseModel):
    object: Literal["deployment"] = "deployment"
    id: str
    created_at: int
    updated_at: int
    model: str
    base_model: str
    kind: str
    profile: str = Field(description="The server it runs: `llm` (LLM, task models, embeddings) or `tabular`")
    status: DeploymentStatus = Field(
        description="pending → deploying → ready | failed → deleting → deleted; `idle`: scaled to zero (min_replicas "
        "0) after idle_seconds without requests, woken (idle → deploying → ready) by the next request"
    )
    name: str = Field(
        description="The backend resource serving it (shared with others for an adapter; your own "
        "`vllm-ft-{you}-...` name when the shared server's name would be another tenant's)"
    )
    shared: bool = Field(description="True when the adapter rides on a server that also serves other deployments")
    endpoint: str | None = Field(description="Where the control plane forwards this model's requests")
    gpu_count: int
    min_replicas: int
    max_replicas: int
    prometheus_threshold: float
    idle_seconds: int
    replicas: int
    ready_replicas: int
    adapters: list[str]
    error: DeploymentError | None
    status_message: str | None = Field(
        None, description="Why it is where it is now, e.g. restarting after its server exited (attempt 1 of 3)"
    )
    ready_at: int | None
    deleted_at: int | None

    @classmethod
    def of(cls, d: Deployment) -> DeploymentOut:
        e = d.endpoint or {}
        where = e.get("url")
        if not where and e.get("target"):
            where = f"sagemaker:{e['target']}" + (f"/{e['component']}" if e.get("component") else "")
        return cls(
            id=d.id,
            created_at=d.created_at,
            updated_at=d.updated_at,
            model=d.model,
            base_model=d.base_model,
            kind=d.kind,
            profile=d.profile,
            status=d.status,
            name=shown_name(d),
            shared=not d.dedicated,
            endpoint=where,
            gpu_count=d.gpu_count,
            min_replicas=d.min_replicas,
            max_replicas=d.max_replicas,
            prometheus_threshold=d.prometheus_threshold,
            idle_seconds=d.idle_seconds,
            replicas=d.replicas,
            ready_replicas=d.ready_replicas,
            adapters=[a for a in d.adapters if _tenant_of(a) == d.client_code],
            error=DeploymentError(**d.error) if d.error else None,
            status_message=d.status_message,
            ready_at=d.ready_at,
            deleted_at=d.deleted_at,
        )


def _tenant_of(model_id: str) -> str | None:
    """`ft:{base}:{tenant}:{suffix}:{job_id}` → tenant (others on a shared server stay hidden)."""
    parts = model_id.rsplit(":", 3)
    return parts[1] if model_id.startswith("ft:") and len(parts) == 4 else None


class _GenerationProxyRequest(BaseModel):
    """Checked here only as far as routing needs; the inference server validates the rest against OpenAI's spec."""

    model_config = ConfigDict(extra="allow")

    model: str
    stream: bool | None = False
    user: str | None = Field(None, max_length=256)  # stored in the usage log, like X-User-ID: same cap


class ChatProxyRequest(_GenerationProxyRequest):
    messages: list[dict[str, Any]]


class CompletionProxyRequest(_GenerationProxyRequest):
    prompt: str | list[str] | list[int] | list[list[int]]


class EmbeddingProxyRequest(BaseModel):
    """OpenAI's CreateEmbeddingRequest, checked as far as routing needs; the server checks the rest."""

    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = Field(None, max_length=256)  # stored in the usage log, like X-User-ID: same cap


@pydantic_dataclass(frozen=True)
class UsageRow(ModelUsage):
    """One model's totals (`ModelUsage`, the service's row) as /v1/usage shows it."""

    object: Literal["usage.model"] = "usage.model"


class UsageOut(BaseModel):
    object: Literal["usage"] = "usage"
    start_time: int | None
    end_time: int | None
    data: list[UsageRow]
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, u: Usage) -> UsageOut:
        return cls.model_validate(asdict(u))


class LogOut(BaseModel):
    object: Literal["inference.log"] = "inference.log"
    id: str
    created_at: int
    model: str
    deployment_id: str | None
    route: str
    user: str | None
    status_code: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    stream: bool
    error: str | None
    request_id: str | None

    @classmethod
    def of(cls, e: InferenceLog) -> LogOut:
        return cls(**e.model_dump(exclude={"client_code", "seq"}))


class SeedDeploy(BaseModel):
    """What seed 001's two deploy requests share: the tenant (checked against the caller's) and the sizing."""

    client_code: str = ""
    gpu_count: int = 1
    min_replicas: int = 1
    max_replicas: int = 2
    prometheus_threshold: float = 5.0


class SeedBaseDeploy(SeedDeploy):
    """Seed 001's BaseModelDeployRequest."""

    model_id: str


class SeedFineTunedDeploy(SeedDeploy):
    """Seed 001's FineTunedDeployRequest. `fine_tuned_weights_path` names the fine-tuned model: its `ft:` id, the
    job id that made it, or where its adapter is (an s3:// URI or key under the tenant's artifacts)."""

    base_model: str
    fine_tuned_weights_path: str


class SeedDeployOut(BaseModel):
    status: str
    deployment: str
    deployment_id: str
    model: str
