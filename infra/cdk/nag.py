"""cdk-nag AwsSolutions checks on every stack.

A finding we accept is suppressed on the resource that raises it, by the code that creates it (`suppress`), with
the reason it is acceptable; `apply_nag` adds only the suppressions for resources the CDK itself adds (custom
resource handlers). The tests fail on any unsuppressed finding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aws_cdk import App, Aspects, Stack
from cdk_nag import AwsSolutionsChecks, NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import IConstruct

LAMBDA_BASIC = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
LAMBDA_VPC = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"

# Handlers the CDK adds for bucket notifications, auto-deleted buckets, emptied ECR repositories and bucket deployments.
_CDK_HANDLERS = (
    "BucketNotificationsHandler",
    "Custom::S3AutoDeleteObjects",
    "Custom::ECRAutoDeleteImages",
    "Custom::CDKBucketDeployment",
)


def suppress(
    construct: IConstruct | Sequence[IConstruct],
    rule: str,
    reason: str,
    applies_to: Iterable[str | RegexAppliesTo] | None = None,
) -> None:
    """Accept `rule` on `construct` and everything under it, for `reason` (shown in nag's report)."""
    suppression = NagPackSuppression(id=rule, reason=reason, applies_to=list(applies_to) if applies_to else None)
    NagSuppressions.add_resource_suppressions(construct, [suppression], apply_to_children=True)


def regex(pattern: str) -> RegexAppliesTo:
    """cdk-nag's regex form: `/.../g`."""
    return RegexAppliesTo(regex=f"/{pattern}/g")


# ARNs read `<AWS::AccountId>` in an environment-agnostic stack and `123456789012` in one with an account.
_PARTITION = r"(<AWS::Partition>|aws[a-z-]*)"
_REGION = r"(<AWS::Region>|[a-z]{2}(-[a-z]+)+-[0-9])"
_ACCOUNT = r"(<AWS::AccountId>|[0-9]{12})"


def arn_regex(service: str, resource: str, *, regional: bool = True) -> RegexAppliesTo:
    """An IAM5 `Resource::arn:...` finding for `service` whose resource part matches the regex `resource`."""
    region = _REGION if regional else ""
    return regex(rf"^Resource::arn:{_PARTITION}:{service}:{region}:{_ACCOUNT}:{resource}$")


def apply_nag(app: App, stacks: Sequence[Stack]) -> None:
    for stack in stacks:
        for child in stack.node.children:
            if child.node.id.startswith(_CDK_HANDLERS):
                _suppress_cdk_handler(child)
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True, reports=False))


def _suppress_cdk_handler(handler: IConstruct) -> None:
    why = "Handler the CDK adds for a custom resource: its role, policy and runtime are the CDK's, not ours"
    suppress(handler, "AwsSolutions-IAM4", why, [LAMBDA_BASIC])
    suppress(handler, "AwsSolutions-IAM5", why)
    suppress(handler, "AwsSolutions-L1", why)
