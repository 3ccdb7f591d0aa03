"""Compute on SageMaker: training jobs, and endpoints serving the base model and LoRA adapters as inference
components. This stack owns the images and the execution role; the control plane's functions get scoped rights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from functions.core import names
from infra.cdk.config import DeployConfig
from infra.cdk.constructs.images import ImageRepositories
from infra.cdk.constructs.storage import READ, WRITE, prefix_statements, suppress_prefix_wildcards
from infra.cdk.nag import arn_regex, suppress
from infra.cdk.stacks.compute import FunctionRoles

# SageMaker sends no inference-component event: those states are polled by the reconciler.
STATE_CHANGES = ("SageMaker Training Job State Change", "SageMaker Endpoint State Change")

TRAINING_INSTANCE_TYPE = "ml.g5.2xlarge"
INFERENCE_INSTANCE_TYPE = "ml.g5.xlarge"

_DESCRIBE = {
    "training-job": ["sagemaker:DescribeTrainingJob"],
    "endpoint": ["sagemaker:DescribeEndpoint"],
    "endpoint-config": ["sagemaker:DescribeEndpointConfig"],
    "inference-component": ["sagemaker:DescribeInferenceComponent"],
    "model": ["sagemaker:DescribeModel"],
}
_MANAGE = {
    "training-job": ["sagemaker:CreateTrainingJob", "sagemaker:StopTrainingJob"],
    "model": ["sagemaker:CreateModel", "sagemaker:DeleteModel"],
    "endpoint-config": ["sagemaker:CreateEndpointConfig", "sagemaker:DeleteEndpointConfig"],
    "endpoint": ["sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:DeleteEndpoint"],
    "inference-component": [
        "sagemaker:CreateInferenceComponent",
        "sagemaker:UpdateInferenceComponent",
        "sagemaker:UpdateInferenceComponentRuntimeConfig",
        "sagemaker:DeleteInferenceComponent",
    ],
}
_AUTOSCALING_SERVICE = "sagemaker.application-autoscaling.amazonaws.com"
_SERVICE_RE = _AUTOSCALING_SERVICE.replace(".", r"\.")


class SageMakerComputeStack(Stack):
    backend = "sagemaker"

    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.images = ImageRepositories(self, "Images", config=config)
        self.execution_role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Mini Studio training jobs and endpoints",
        )
        self.images.trainer.grant_pull(self.execution_role)
        self.images.inference.grant_pull(self.execution_role)
        self.execution_role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[
                    self.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="/aws/sagemaker/*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        self.execution_role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],  # PutMetricData has no resource type: the namespace condition scopes it
                conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", f"{names.APP}*"]}},
            )
        )
        suppress(
            self.execution_role,
            "AwsSolutions-IAM5",
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData take no resource (the latter is held to "
            "SageMaker's namespaces by condition); SageMaker creates its log groups under /aws/sagemaker/ per job",
            [
                "Resource::*",
                arn_regex("logs", r"log-group:\/aws\/sagemaker\/\*"),
            ],
        )

    def function_environment(self) -> Mapping[str, str]:
        return {
            "SAGEMAKER_EXECUTION_ROLE_ARN": self.execution_role.role_arn,
            "TRAINER_IMAGE_URI": self.images.trainer_uri(),
            "INFERENCE_IMAGE_URI": self.images.inference_uri(),
            "SAGEMAKER_TRAINING_INSTANCE_TYPE": TRAINING_INSTANCE_TYPE,
            "SAGEMAKER_INFERENCE_INSTANCE_TYPE": INFERENCE_INSTANCE_TYPE,
        }

    def event_patterns(self) -> list[events.EventPattern]:
        return [events.EventPattern(source=["aws.sagemaker"], detail_type=list(STATE_CHANGES))]

    def grant_functions(self, scope: Construct, roles: FunctionRoles) -> None:
        stack = Stack.of(scope)

        def arns(*types: str) -> list[str]:
            return [stack.format_arn(service="sagemaker", resource=t, resource_name="*") for t in types]

        describe_all = [
            iam.PolicyStatement(actions=sorted(a for v in _DESCRIBE.values() for a in v), resources=arns(*_DESCRIBE))
        ]
        manage = [
            iam.PolicyStatement(actions=[*acts, "sagemaker:AddTags"], resources=arns(t)) for t, acts in _MANAGE.items()
        ]
        pass_role = iam.PolicyStatement(
            actions=["iam:PassRole"],
            resources=[self.execution_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )
        autoscaling = [
            # Application Auto Scaling has no resource-level permissions for these actions.
            iam.PolicyStatement(
                actions=[
                    "application-autoscaling:RegisterScalableTarget",
                    "application-autoscaling:DeregisterScalableTarget",
                    "application-autoscaling:PutScalingPolicy",
                    "application-autoscaling:DeleteScalingPolicy",
                    "application-autoscaling:DescribeScalableTargets",
                    "application-autoscaling:DescribeScalingPolicies",
                ],
                resources=["*"],
            ),
            # Target tracking creates its alarms with the caller's rights.
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"],
                resources=[
                    stack.format_arn(
                        service="cloudwatch",
                        resource="alarm",
                        resource_name="TargetTracking-*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            ),
            iam.PolicyStatement(
                actions=["iam:CreateServiceLinkedRole"],
                resources=[
                    stack.format_arn(
                        service="iam",
                        region="",
                        resource="role",
                        resource_name=f"aws-service-role/{_AUTOSCALING_SERVICE}/*",
                    )
                ],
                conditions={"StringLike": {"iam:AWSServiceName": _AUTOSCALING_SERVICE}},
            ),
        ]
        listing = iam.PolicyStatement(
            actions=["sagemaker:ListTrainingJobs", "sagemaker:ListEndpoints", "sagemaker:ListInferenceComponents"],
            resources=["*"],  # List* actions take no resource
        )
        invoke = iam.PolicyStatement(
            actions=["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"],
            resources=arns("endpoint"),
        )
        grants = {
            "Api": (roles.api, [invoke, *describe_all]),
            "Dispatch": (roles.dispatch, [*manage, *describe_all, pass_role, *autoscaling]),
            "Status": (roles.status, describe_all),
            "Reconcile": (roles.reconcile, [*describe_all, listing]),
        }
        for name, (role, statements) in grants.items():
            policy = iam.Policy(scope, f"SageMaker{name}", statements=statements, roles=[role])
            suppress(
                policy,
                "AwsSolutions-IAM5",
                "SageMaker resources are named from job and deployment ids at run time, so grants are per resource "
                "type in this account and region; iam:PassRole names the one execution role. List* and Application "
                "Auto Scaling's actions take no resource; target-tracking alarms are always named TargetTracking-*",
                [
                    arn_regex("sagemaker", r"[a-z-]+\/\*"),
                    "Resource::*",
                    arn_regex("cloudwatch", r"alarm:TargetTracking-\*"),
                    arn_regex("iam", rf"role\/aws-service-role\/{_SERVICE_RE}\/\*", regional=False),
                ],
            )

    def grant_data(self, scope: Construct, datasets: s3.IBucket, artifacts: s3.IBucket) -> None:
        statements = [
            *prefix_statements(datasets, names.INGEST_PREFIXES, READ),
            *prefix_statements(artifacts, [names.ARTIFACTS_PREFIX], [*READ, *WRITE]),
        ]
        suppress_prefix_wildcards(
            iam.Policy(scope, "SageMakerExecutionData", statements=statements, roles=[self.execution_role])
        )
