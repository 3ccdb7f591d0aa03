"""A control-plane Lambda: the locally bundled `functions` package, SnapStart on published versions, one alias.

Everything that invokes a function (API Gateway, SQS event sources, EventBridge) points at `alias`, never at
`$LATEST`: SnapStart only applies to published versions, so `$LATEST` would cold-start every time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import Annotations, AssetHashType, BundlingOptions, DockerImage, Duration, ILocalBundling, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.cdk import bundle
from infra.cdk.nag import LAMBDA_BASIC, LAMBDA_VPC, suppress

# The bundle's wheels are built for exactly this runtime and architecture (bundle.PYTHON_VERSION, bundle.PLATFORM);
# SnapStart for Python needs 3.12 or later.
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.X86_64
if RUNTIME.name != f"python{bundle.PYTHON_VERSION}" or not bundle.PLATFORM.endswith("x86_64"):
    raise RuntimeError("the Lambda runtime/architecture and the bundle's pip platform disagree")

ALIAS = "live"
# Only consulted if local bundling declined, which it never does: it raises instead, so Docker is never needed.
_FALLBACK_IMAGE = "public.ecr.aws/sam/build-python3.12"


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """`pip install --platform ...` into the asset folder, on this machine (see infra/cdk/bundle.py)."""

    def __init__(self, extras: Sequence[str] = ()) -> None:
        self.extras = tuple(extras)

    def try_bundle(self, output_dir: str, options: Any = None, **_: Any) -> bool:
        bundle.build(Path(output_dir), self.extras)
        return True


def control_plane_code(extras: Sequence[str] = ()) -> lambda_.Code:
    """One asset for every function: the same bundle, built once per synth, whatever the handler."""
    return lambda_.Code.from_asset(
        str(bundle.ROOT / bundle.PACKAGE),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=bundle.source_hash(extras),
        bundling=BundlingOptions(image=DockerImage.from_registry(_FALLBACK_IMAGE), local=LocalPipBundling(extras)),
    )


class ControlPlaneFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        handler: str,
        description: str,
        environment: Mapping[str, str],
        timeout_seconds: int,
        memory_mb: int,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        log_retention: logs.RetentionDays,
        removal: RemovalPolicy,
        reserved_concurrency: int | None = None,
        async_retry_attempts: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=removal)
        self.function = lambda_.Function(
            self,
            "Function",
            code=code,
            handler=handler,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            description=description,
            environment=dict(environment),
            timeout=Duration.seconds(timeout_seconds),
            memory_size=memory_mb,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[security_group],
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            tracing=lambda_.Tracing.ACTIVE,
            reserved_concurrent_executions=reserved_concurrency,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS,
            # SnapStart bills snapshot caching per active version: old versions go when a new one is published.
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY),
        )
        self.alias = lambda_.Alias(
            self,
            "Alias",
            alias_name=ALIAS,
            version=self.function.current_version,
            retry_attempts=async_retry_attempts,
        )
        # The CDK warns that SnapStart needs a published version: `current_version` behind the alias is one.
        Annotations.of(self.function).acknowledge_warning(
            "@aws-cdk/aws-lambda:snapStartRequirePublish", "published as current_version, invoked via the alias"
        )
        suppress(
            self.function,
            "AwsSolutions-L1",
            f"Pinned to Python {bundle.PYTHON_VERSION}: the bundle's wheels are built for exactly that CPython "
            "(bundle.PYTHON_VERSION); runtime and bundle move together, deliberately",
        )
        suppress(
            self.function,
            "AwsSolutions-IAM4",
            "AWS-maintained minimal policies: CloudWatch Logs writes and the VPC network interfaces Lambda needs",
            [LAMBDA_BASIC, LAMBDA_VPC],
        )
        suppress(
            self.function,
            "AwsSolutions-IAM5",
            "X-Ray's PutTraceSegments/PutTelemetryRecords have no resource-level permissions",
            ["Resource::*"],
        )
