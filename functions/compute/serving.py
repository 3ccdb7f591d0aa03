"""The serving backend protocol: where inference deployments run (a local `ministudio-serve` subprocess, a vLLM
Deployment + Service + KEDA ScaledObject on EKS, a SageMaker endpoint with inference components).

Every call is keyed by the deployment's backend name (DNS-1123, ≤ 63 characters), so deploying twice (a redelivered
message, a retried Lambda) finds the first deployment instead of starting a second one. Backends that serve training
too expose `create_serving_backend(settings)` next to `create_backend(settings)`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


class EndpointState(StrEnum):
    deploying = "deploying"  # created, replicas not ready yet
    ready = "ready"  # at least one replica answers readiness
    idle = "idle"  # scaled to zero replicas, as its range allows: woken by demand (functions/deployments/wake.py)
    failed = "failed"
    deleting = "deleting"
    missing = "missing"  # the backend knows no deployment of that name (deleted, or never created)


@dataclass(frozen=True)
class AdapterSpec:
    """A fine-tuned model served as a LoRA adapter: its public model id and where its files are."""

    model_id: str  # ft:{base}:{tenant}:{suffix}:{job_id}
    artifact_uri: str  # s3://bucket/artifacts/{tenant}/{job_id}/adapter/
    tenant: str


@dataclass(frozen=True)
class ServingSpec:
    """Everything a backend needs to run one deployment; JSON-able, no secrets (the server key comes from settings)."""

    deployment_id: str
    name: str  # backend resource name: serving_name(...)
    tenant: str
    model: str  # base model id (catalogue name, e.g. HuggingFaceTB/SmolLM2-135M-Instruct)
    gpu_count: int = 1
    min_replicas: int = 1
    max_replicas: int = 1
    prometheus_threshold: float = 5.0  # KEDA: scale out when vllm:num_requests_waiting per replica exceeds this
    idle_seconds: int = 900  # min_replicas 0: scaled to zero after this long without requests
    max_loras: int = 8
    adapters: tuple[AdapterSpec, ...] = ()  # adapters to load at start (a dedicated fine-tuned deployment)
    engine: Literal["auto", "transformers", "vllm"] = "auto"
    # `llm`: the OpenAI, seed 002 and seed 003 routes on `model` (GPU where the backend has one); `tabular`: seed
    # 004's classical models, no LLM and no GPU (a CPU node on EKS, a CPU instance type on SageMaker).
    profile: Literal["llm", "tabular"] = "llm"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Endpoint:
    """How the control plane calls a deployment. `http`: POST `url` + path with the server key (local, EKS Service);
    `sagemaker`: `invoke_endpoint[_with_response_stream]` on `target` (+ `component` for an adapter)."""

    kind: Literal["http", "sagemaker"]
    url: str | None = None
    target: str | None = None
    component: str | None = None


@dataclass(frozen=True)
class EndpointStatus:
    name: str
    state: EndpointState
    replicas: int = 0
    ready_replicas: int = 0
    endpoint: Endpoint | None = None
    adapters: tuple[str, ...] = ()  # model ids of adapters the backend has attached
    message: str | None = None
    backend_id: str | None = None  # pid, Kubernetes uid, SageMaker ARN
    restarting: bool = False  # its server exited and the backend is bringing it back (`message` says how far)


class ServingBackend(Protocol):
    name: str

    def deploy(self, spec: ServingSpec) -> EndpointStatus:
        """Create the deployment; if one of this name exists, return its status and create nothing."""
        ...

    def status(self, name: str) -> EndpointStatus: ...

    def scale(self, name: str, min_replicas: int, max_replicas: int) -> EndpointStatus: ...

    def delete(self, name: str) -> EndpointStatus:
        """Remove it and everything it owns; deleting a missing deployment is not an error (state `missing`)."""
        ...

    def add_adapter(self, name: str, adapter: AdapterSpec) -> EndpointStatus:
        """Make an adapter servable on a ready deployment of its base model (pre-load it, or create the SageMaker
        inference component); idempotent."""
        ...

    def remove_adapter(self, name: str, model_id: str) -> EndpointStatus: ...

    def adapter_endpoint(self, name: str, model_id: str) -> Endpoint | None:
        """Where requests for an adapter on deployment `name` go (the server's URL, or a SageMaker inference
        component of its own); None while the deployment has no endpoint."""
        ...


@runtime_checkable
class ScalesToZero(Protocol):
    """A backend whose control plane stops and starts servers itself (local): KEDA (EKS) and Application Auto Scaling
    (SageMaker) scale to and from zero on their own, on the signals the control plane leaves them."""

    def sleep(self, name: str) -> EndpointStatus:
        """Stop the deployment's servers, keeping what starts them again (spec, adapters, port); state `idle`."""
        ...

    def wake(self, name: str) -> EndpointStatus:
        """Start the servers of an idle deployment; idempotent (one start however many callers)."""
        ...


def serving_name(kind: Literal["base", "ft"], tenant: str, model: str, deployment_id: str) -> str:
    """Seed 001's names, sanitised to DNS-1123 and ≤ 63 characters: `vllm-base-{model}` / `vllm-ft-{tenant}-{model}`,
    made unique per deployment with a short hash of its id (two tenants may deploy the same base model)."""
    stem = model.rsplit("/", 1)[-1].lower()
    stem = _NOT_DNS.sub("-", stem.replace("_", "-").replace(".", "-")).strip("-") or "model"
    prefix = "vllm-base" if kind == "base" else f"vllm-ft-{tenant}"
    digest = hashlib.sha256(deployment_id.encode()).hexdigest()[:6]
    room = 63 - len(prefix) - len(digest) - 2
    stem = stem[:room].strip("-") or "m"
    return f"{prefix}-{stem}-{digest}"


# Prometheus label that names a deployment on every scraped inference server: the local runtime's file_sd targets
# and the EKS scrape config (relabelled from the pod label `ministudio.io/deployment`) both set it.
DEPLOYMENT_LABEL = "deployment"
POD_DEPLOYMENT_LABEL = "ministudio.io/deployment"


def queue_depth_query(name: str) -> str:
    """The KEDA trigger's PromQL: requests waiting across a deployment's replicas (vLLM's metric name, which the
    transformers engine exports too)."""
    return f'sum(vllm:num_requests_waiting{{{DEPLOYMENT_LABEL}="{name}"}})'
