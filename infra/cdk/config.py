"""What a deployment looks like, read once from CDK context (`cdk.json` defaults, `-c key=value` overrides).

Everything environment-specific (retention, removal, concurrency, throttling, NAT count) lives in `PROFILES`, so a
stack never branches on the environment's name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs

from functions.core import names

Compute = Literal["sagemaker", "eks"]
COMPUTES: tuple[Compute, ...] = ("sagemaker", "eks")

# Worker entry points (another module writes dispatch/status/reconcile; the stacks wire them by path).
API_HANDLER = "functions.api.handler.handler"
HANDLERS = {
    names.INGEST_QUEUE: "functions.workers.ingest.handler",
    names.DISPATCH_QUEUE: "functions.workers.dispatch.handler",
    names.STATUS_QUEUE: "functions.workers.status.handler",
}
RECONCILE_HANDLER = "functions.workers.reconcile.handler"
RECONCILE_RATE_MINUTES = 5
# Shorter than the schedule's period, so two reconciler runs never overlap.
RECONCILE_TIMEOUT_SECONDS = 240
API_TIMEOUT_SECONDS = 29  # API Gateway's own integration limit: longer would only hold a dead connection open

# The trainer tags intermediate checkpoints with this, so a lifecycle rule can expire them while final adapters
# (untagged) stay: S3 lifecycle filters cannot match artifacts/{tenant}/{job}/checkpoints/ by prefix.
CHECKPOINT_TAG = ("ministudio-kind", "checkpoint")

# Kubernetes side of the eks backend.
SERVING_NAMESPACE = names.APP
WORKERS_K8S_GROUP = f"{names.APP}-workers"
WORKLOAD_SERVICE_ACCOUNT = f"{names.APP}-workload"


@dataclass(frozen=True)
class Profile:
    log_retention: logs.RetentionDays
    removal: RemovalPolicy
    nat_gateways: int
    api_rate_limit: int  # steady requests/s over the whole stage
    api_burst_limit: int
    worker_max_concurrency: int  # per SQS event source: caps MongoDB connections without throttling retries
    reserved_concurrency: Mapping[str, int]  # function key → reserved; empty where the account's limit is small
    checkpoint_expiry_days: int
    noncurrent_version_days: int
    access_log_days: int
    gpu_nodes: tuple[int, int]  # managed GPU node group (min, max)


PROFILES: dict[str, Profile] = {
    "dev": Profile(
        log_retention=logs.RetentionDays.TWO_WEEKS,
        removal=RemovalPolicy.DESTROY,
        nat_gateways=1,
        api_rate_limit=50,
        api_burst_limit=100,
        worker_max_concurrency=5,
        # New accounts may have a concurrency limit of 10, with none of it reservable.
        reserved_concurrency={},
        checkpoint_expiry_days=14,
        noncurrent_version_days=7,
        access_log_days=30,
        gpu_nodes=(0, 1),
    ),
    "prod": Profile(
        log_retention=logs.RetentionDays.THREE_MONTHS,
        removal=RemovalPolicy.RETAIN,
        nat_gateways=2,
        api_rate_limit=500,
        api_burst_limit=1000,
        worker_max_concurrency=20,
        reserved_concurrency={"reconcile": 1},  # one reconciler at a time, always
        checkpoint_expiry_days=90,
        noncurrent_version_days=30,
        access_log_days=365,
        gpu_nodes=(1, 4),
    ),
}


@dataclass(frozen=True)
class DeployConfig:
    env: str
    compute: Compute
    account: str | None = None
    region: str | None = None
    vpc_id: str | None = None
    eks_cluster_name: str | None = None
    eks_cluster_security_group_id: str | None = None
    domain_name: str | None = None
    certificate_arn: str | None = None
    alarm_topic_arn: str | None = None
    image_tag: str = "latest"
    gpu_instance_types: tuple[str, ...] = ("g6.xlarge", "g5.xlarge")

    @property
    def profile(self) -> Profile:
        return PROFILES[self.env]

    @property
    def stack_prefix(self) -> str:
        return f"MiniStudio-{self.env}"

    def resource_name(self, name: str) -> str:
        """An environment's physical name for a shared name: `ministudio-ingest` → `ministudio-ingest-dev`."""
        return f"{name}-{self.env}"

    def queue_name(self, queue: str) -> str:
        return self.resource_name(queue)

    def dlq_name(self, queue: str) -> str:
        return names.dlq_name(self.queue_name(queue))

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> DeployConfig:
        """`get` is `app.node.try_get_context`. Raises ValueError naming the key when a value cannot work."""

        def text(key: str) -> str | None:
            value = get(key)
            return None if value in (None, "") else str(value)

        env = text("env") or "dev"
        if env not in PROFILES:
            raise ValueError(f"-c env={env}: expected one of {', '.join(PROFILES)}")
        compute = text("compute") or "sagemaker"
        if compute not in COMPUTES:
            raise ValueError(f"-c compute={compute}: expected one of {', '.join(COMPUTES)}")
        domain, certificate = text("domain_name"), text("certificate_arn")
        if bool(domain) != bool(certificate):
            raise ValueError("-c domain_name and -c certificate_arn go together: give both or neither")
        vpc_id = text("vpc_id")
        if vpc_id and not re.fullmatch(r"vpc-[0-9a-f]{8,17}", vpc_id):
            raise ValueError(f"-c vpc_id={vpc_id}: not a VPC id")
        account, region = text("account"), text("region")
        if vpc_id and not (account and region):
            # Vpc.from_lookup needs a concrete environment; the CLI fills these from the caller's credentials.
            raise ValueError("-c vpc_id needs the target account and region (CDK_DEFAULT_ACCOUNT/REGION or -c)")
        gpu_types = text("gpu_instance_types")
        return cls(
            env=env,
            compute=cast(Compute, compute),  # checked against COMPUTES above
            account=account,
            region=region,
            vpc_id=vpc_id,
            eks_cluster_name=text("eks_cluster_name"),
            eks_cluster_security_group_id=text("eks_cluster_security_group_id"),
            domain_name=domain,
            certificate_arn=certificate,
            alarm_topic_arn=text("alarm_topic_arn"),
            image_tag=text("image_tag") or "latest",
            gpu_instance_types=tuple(gpu_types.split(",")) if gpu_types else cls.gpu_instance_types,
        )
