"""The control plane: HTTP API → API function; buckets → ingest/status queues → workers; compute state changes →
status queue; a reconciler every few minutes; secrets for MongoDB, Redis and the admin key; alarms.

Every function is the same locally built bundle with a different handler, invoked through its `live` alias.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from functions.core import names
from infra.cdk import config as cfg
from infra.cdk.config import DeployConfig
from infra.cdk.constructs.alarms import Alarms
from infra.cdk.constructs.console_hosting import ConsoleHosting
from infra.cdk.constructs.http_api import HttpApi
from infra.cdk.constructs.python_function import ControlPlaneFunction, control_plane_code
from infra.cdk.constructs.storage import DELETE, READ, WRITE, Storage, grant_prefixes
from infra.cdk.constructs.worker_queue import WorkerQueue
from infra.cdk.nag import suppress
from infra.cdk.stacks.compute import ComputeBackend, FunctionRoles


@dataclass(frozen=True)
class FunctionSpec:
    handler: str
    timeout_seconds: int
    memory_mb: int
    description: str


# Key → spec. Memory buys CPU too: the API and ingest (streamed validation) are CPU-bound, the others wait on I/O.
FUNCTIONS = {
    "api": FunctionSpec(cfg.API_HANDLER, cfg.API_TIMEOUT_SECONDS, 1024, "Mini Studio API (FastAPI via Mangum)"),
    "ingest": FunctionSpec(
        cfg.HANDLERS[names.INGEST_QUEUE], names.WORKER_TIMEOUT_SECONDS[names.INGEST_QUEUE], 1024, "Dataset validation"
    ),
    "dispatch": FunctionSpec(
        cfg.HANDLERS[names.DISPATCH_QUEUE], names.WORKER_TIMEOUT_SECONDS[names.DISPATCH_QUEUE], 512, "Job dispatch"
    ),
    "status": FunctionSpec(
        cfg.HANDLERS[names.STATUS_QUEUE], names.WORKER_TIMEOUT_SECONDS[names.STATUS_QUEUE], 512, "Job/deployment status"
    ),
    "reconcile": FunctionSpec(cfg.RECONCILE_HANDLER, cfg.RECONCILE_TIMEOUT_SECONDS, 512, "Reconciler"),
}
CONSUMERS = {names.INGEST_QUEUE: "ingest", names.DISPATCH_QUEUE: "dispatch", names.STATUS_QUEUE: "status"}
# The logical ids `sam local invoke -t cdk.out/<stack>.template.json <id>` takes: stable and readable.
LOGICAL_IDS = {key: f"{key.capitalize()}Function" for key in FUNCTIONS}


class ControlPlaneStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        compute: ComputeBackend,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        profile = config.profile
        self.storage = Storage(self, "Storage", profile=profile)
        self.secrets = {
            "mongodb": self._secret("MongoDbUrl", config, "mongodb-url", "MongoDB connection URL (set after deploy)"),
            "redis": self._secret("RedisUrl", config, "redis-url", "Redis URL, e.g. rediss://... (set after deploy)"),
            "admin": self._secret("AdminApiKey", config, "admin-api-key", "Admin API key (generated)", generate=True),
        }
        self.queues = {
            queue: WorkerQueue(
                self,
                _pascal(queue),
                queue=queue,
                queue_name=config.queue_name(queue),
                dlq_name=config.dlq_name(queue),
                removal=profile.removal,
            )
            for queue in names.QUEUES
        }

        code = control_plane_code(extras=("eks",) if config.compute == "eks" else ())
        self.functions: dict[str, ControlPlaneFunction] = {}
        for key, spec in FUNCTIONS.items():
            fn = ControlPlaneFunction(
                self,
                key.capitalize(),
                code=code,
                handler=spec.handler,
                description=spec.description,
                environment=self._environment(key, config, compute),
                timeout_seconds=spec.timeout_seconds,
                memory_mb=spec.memory_mb,
                vpc=vpc,
                security_group=security_group,
                log_retention=profile.log_retention,
                removal=profile.removal,
                reserved_concurrency=profile.reserved_concurrency.get(key),
                # A failed reconciler run is simply redone by the next tick: a retry would overlap it.
                async_retry_attempts=0 if key == "reconcile" else None,
            )
            fn.function.node.default_child.override_logical_id(LOGICAL_IDS[key])  # type: ignore[union-attr]
            self.functions[key] = fn

        for queue, key in CONSUMERS.items():
            self.queues[queue].consume_with(self.functions[key].alias, profile.worker_max_concurrency)
        self.storage.notify({queue: wq.queue for queue, wq in self.queues.items()})
        for index, pattern in enumerate(compute.event_patterns()):
            events.Rule(
                self,
                f"ComputeStateChanges{index}",
                description=f"{compute.backend} state changes → status queue",
                event_pattern=pattern,
                targets=[targets.SqsQueue(self.queues[names.STATUS_QUEUE].queue)],
            )
        events.Rule(
            self,
            "ReconcileSchedule",
            description="Re-send stuck jobs and poll backends for lost events",
            schedule=events.Schedule.rate(Duration.minutes(cfg.RECONCILE_RATE_MINUTES)),
            targets=[
                targets.LambdaFunction(
                    self.functions["reconcile"].alias,
                    retry_attempts=0,
                    max_event_age=Duration.minutes(cfg.RECONCILE_RATE_MINUTES),
                )
            ],
        )

        self.http = HttpApi(
            self,
            "Http",
            handler=self.functions["api"].alias,
            rate_limit=profile.api_rate_limit,
            burst_limit=profile.api_burst_limit,
            log_retention=profile.log_retention,
            removal=profile.removal,
            domain_name=config.domain_name,
            certificate_arn=config.certificate_arn,
        )
        # The console on CloudFront; the API lets that origin call it (CORS).
        api_url = f"https://{config.domain_name}/" if config.domain_name else self.http.url
        self.console = ConsoleHosting(
            self,
            "Console",
            api_url=api_url,
            profile=profile,
            access_logs=self.storage.access_logs,
            datasets=self.storage.datasets,
        )
        self.functions["api"].function.add_environment("CONSOLE_ORIGINS", f'["{self.console.origin}"]')
        self._grant(compute)
        Alarms(
            self,
            "Alarms",
            topic_arn=config.alarm_topic_arn,
            api=self.http.api,
            functions={key: fn.function for key, fn in self.functions.items()},
            queues=list(self.queues.values()),
        )
        CfnOutput(self, "ApiUrl", value=api_url)
        CfnOutput(self, "ConsoleUrl", value=self.console.url)
        if self.http.domain:  # point the custom domain's DNS record (CNAME or Route 53 alias) here
            CfnOutput(self, "ApiDomainTarget", value=self.http.domain.regional_domain_name)
        CfnOutput(self, "DatasetsBucketName", value=self.storage.datasets.bucket_name)
        CfnOutput(self, "ArtifactsBucketName", value=self.storage.artifacts.bucket_name)
        for key, secret in self.secrets.items():
            CfnOutput(self, f"{key.capitalize()}SecretArn", value=secret.secret_arn)

    def _secret(
        self, construct_id: str, config: DeployConfig, name: str, description: str, *, generate: bool = False
    ) -> secretsmanager.Secret:
        secret = secretsmanager.Secret(
            self,
            construct_id,
            secret_name=f"{names.APP}/{config.env}/{name}",
            description=f"Mini Studio {config.env}: {description}",
            generate_secret_string=(
                secretsmanager.SecretStringGenerator(password_length=48, exclude_punctuation=True) if generate else None
            ),
            removal_policy=config.profile.removal,
        )
        suppress(
            secret,
            "AwsSolutions-SMG4",
            "Generated admin key: rotating it is an operator's decision (put-secret-value; functions re-read it "
            "within minutes)"
            if generate
            else "URL of a database managed outside this app (Atlas/DocumentDB, ElastiCache): its credentials rotate "
            "where they are issued, then the new URL is set with put-secret-value",
        )
        return secret

    def _environment(self, key: str, config: DeployConfig, compute: ComputeBackend) -> Mapping[str, str]:
        env = {
            "ENVIRONMENT": config.env,
            "LOG_LEVEL": "INFO",
            "POWERTOOLS_SERVICE_NAME": f"{names.APP}-{key}",
            "POWERTOOLS_METRICS_NAMESPACE": "MiniStudio",
            "DATABASE_NAME": f"mini_studio_{config.env}",
            "COMPUTE_BACKEND": config.compute,
            "AWS_BUCKET_NAME": self.storage.datasets.bucket_name,
            "ARTIFACTS_BUCKET_NAME": self.storage.artifacts.bucket_name,
            "INGEST_QUEUE_URL": self.queues[names.INGEST_QUEUE].queue.queue_url,
            "DISPATCH_QUEUE_URL": self.queues[names.DISPATCH_QUEUE].queue.queue_url,
            "STATUS_QUEUE_URL": self.queues[names.STATUS_QUEUE].queue.queue_url,
            "MONGODB_URL_SECRET_ARN": self.secrets["mongodb"].secret_arn,
            "REDIS_URL_SECRET_ARN": self.secrets["redis"].secret_arn,
        }
        if key != "ingest":  # validation never touches the compute backend
            env.update(compute.function_environment())
        if key == "api":
            env["ADMIN_API_KEY_SECRET_ARN"] = self.secrets["admin"].secret_arn
            if config.domain_name:
                env["PUBLIC_BASE_URL"] = f"https://{config.domain_name}"
        return env

    def _grant(self, compute: ComputeBackend) -> None:
        """Least privilege per function: the prefixes it touches, the queues it sends to, the secrets it reads."""
        datasets, artifacts = self.storage.datasets, self.storage.artifacts
        fns = {key: fn.function for key, fn in self.functions.items()}
        for fn in fns.values():
            self.secrets["mongodb"].grant_read(fn)
            self.secrets["redis"].grant_read(fn)
        self.secrets["admin"].grant_read(fns["api"])

        grant_prefixes(fns["api"], datasets, names.INGEST_PREFIXES, [*READ, *WRITE, *DELETE])
        grant_prefixes(fns["api"], artifacts, [names.ARTIFACTS_PREFIX], [*READ, *DELETE])  # downloads; model delete
        grant_prefixes(fns["ingest"], datasets, names.INGEST_PREFIXES, READ)
        grant_prefixes(fns["dispatch"], datasets, names.INGEST_PREFIXES, READ)
        grant_prefixes(fns["dispatch"], artifacts, [names.ARTIFACTS_PREFIX], [*READ, *WRITE])
        grant_prefixes(fns["status"], artifacts, [names.ARTIFACTS_PREFIX], READ)
        grant_prefixes(fns["reconcile"], artifacts, [names.ARTIFACTS_PREFIX], READ)

        dispatch_queue = self.queues[names.DISPATCH_QUEUE].queue
        dispatch_queue.grant_send_messages(fns["api"])  # a created job is enqueued
        dispatch_queue.grant_send_messages(fns["reconcile"])  # stuck `queued` jobs are re-sent

        roles = FunctionRoles(
            api=_role(fns["api"]),
            dispatch=_role(fns["dispatch"]),
            status=_role(fns["status"]),
            reconcile=_role(fns["reconcile"]),
        )
        compute.grant_functions(self, roles)
        compute.grant_data(self, datasets, artifacts)


def _role(fn: lambda_.Function) -> iam.IRole:
    if fn.role is None:  # only an imported function lacks one
        raise RuntimeError(f"{fn.node.path} has no execution role")
    return fn.role


def _pascal(name: str) -> str:
    """`ministudio-ingest` → `IngestQueue` (construct ids, so templates read well)."""
    return name.removeprefix(f"{names.APP}-").capitalize() + "Queue"
