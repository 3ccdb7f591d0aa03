"""The datasets and artifacts buckets, their access-log bucket, and the ObjectCreated → queue notifications.

The notification routes come from `functions.local.resources.notification_routes`, the function the local runtime
uses to configure moto, so both declare the same prefixes → queues.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.core import names
from functions.local.resources import notification_routes
from infra.cdk.config import CHECKPOINT_TAG, Profile
from infra.cdk.nag import regex, suppress

READ = ("s3:GetObject",)
WRITE = ("s3:PutObject", "s3:AbortMultipartUpload")
DELETE = ("s3:DeleteObject",)

# Placeholders handed to notification_routes: real bucket names are deploy-time tokens.
_DATASETS, _ARTIFACTS = "datasets", "artifacts"


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, profile: Profile) -> None:
        super().__init__(scope, construct_id)
        # S3 server access logging cannot write to SSE-KMS: every bucket here is S3-managed (private_bucket).
        self.access_logs = private_bucket(self, "AccessLogs", profile, lifecycle_rules=[expire_logs(profile)])
        abort_uploads = s3.LifecycleRule(
            id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)
        )
        self.datasets = private_bucket(
            self,
            "Datasets",
            profile,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="datasets/",
            lifecycle_rules=[
                abort_uploads,
                # A dropped file stays the dataset's object (its s3_key), so it is never expired: after the
                # validation and training reads it is rarely touched, and Intelligent-Tiering makes that cheap.
                s3.LifecycleRule(
                    id="incoming-tiering",
                    prefix=names.INCOMING_PREFIX,
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INTELLIGENT_TIERING, transition_after=Duration.days(30)
                        )
                    ],
                ),
            ],
        )
        self.artifacts = private_bucket(
            self,
            "Artifacts",
            profile,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="artifacts/",
            versioned=True,
            lifecycle_rules=[
                abort_uploads,
                s3.LifecycleRule(
                    id="expire-checkpoints",
                    prefix=names.ARTIFACTS_PREFIX,
                    tag_filters=dict([CHECKPOINT_TAG]),
                    expiration=Duration.days(profile.checkpoint_expiry_days),
                ),
                # progress.json is rewritten every logging step: without this, versioning would keep each one.
                s3.LifecycleRule(
                    id="expire-noncurrent",
                    noncurrent_version_expiration=Duration.days(profile.noncurrent_version_days),
                    expired_object_delete_marker=True,
                ),
            ],
        )

    def notify(self, queues: Mapping[str, sqs.IQueue]) -> None:
        """ObjectCreated under each routed prefix → that queue (queues keyed by `names.*_QUEUE`)."""
        buckets = {_DATASETS: self.datasets, _ARTIFACTS: self.artifacts}
        for bucket_key, routes in notification_routes(_DATASETS, _ARTIFACTS).items():
            for prefix, queue in routes:
                buckets[bucket_key].add_event_notification(
                    s3.EventType.OBJECT_CREATED,
                    s3n.SqsDestination(queues[queue]),
                    s3.NotificationKeyFilter(prefix=prefix),
                )


def private_bucket(
    scope: Construct,
    construct_id: str,
    profile: Profile,
    *,
    object_ownership: s3.ObjectOwnership = s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
    **fields: Any,
) -> s3.Bucket:
    """A bucket no one reaches in public, S3-managed encryption (server access logging cannot write to SSE-KMS),
    TLS only; emptied and removed with the stack where the profile destroys (`fields`: the rest of s3.Bucket's)."""
    return s3.Bucket(
        scope,
        construct_id,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        object_ownership=object_ownership,
        removal_policy=profile.removal,
        auto_delete_objects=profile.removal == RemovalPolicy.DESTROY,
        **fields,
    )


def expire_logs(profile: Profile) -> s3.LifecycleRule:
    """Logs kept for the profile's `access_log_days`."""
    return s3.LifecycleRule(id="expire-logs", expiration=Duration.days(profile.access_log_days))


def prefix_statements(bucket: s3.IBucket, prefixes: Iterable[str], actions: Iterable[str]) -> list[iam.PolicyStatement]:
    """Object actions on `prefix*` only.

    ListBucket is granted on the bucket without a prefix condition: S3 answers HeadObject on a missing key with
    403 instead of 404 unless the caller may list, and the workers rely on the 404. Listing shows key names,
    never content.
    """
    return [
        iam.PolicyStatement(
            actions=sorted(set(actions)), resources=[bucket.arn_for_objects(f"{p}*") for p in prefixes]
        ),
        iam.PolicyStatement(actions=bucket_actions(actions), resources=[bucket.bucket_arn]),
    ]


def bucket_actions(object_actions: Iterable[str]) -> list[str]:
    """Who may abort multipart uploads must be able to find them: cancelling an upload lists what is open under
    its prefix (functions/store/blobs.py)."""
    if "s3:AbortMultipartUpload" in set(object_actions):
        return ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    return ["s3:ListBucket"]


def suppress_prefix_wildcards(construct: Construct) -> None:
    """`prefix*` is the narrowest an object grant can be: keys hold tenant and object ids created at run time."""
    alternatives = "|".join(p.rstrip("/") for p in (*names.INGEST_PREFIXES, names.ARTIFACTS_PREFIX))
    suppress(
        construct,
        "AwsSolutions-IAM5",
        "Object access is scoped to key prefixes (datasets/, uploads/, incoming/, artifacts/); the keys below them "
        "carry tenant and object ids created at run time",
        [regex(rf"^Resource::<[A-Za-z0-9]+\.Arn>\/({alternatives})\/\*$")],
    )


def grant_prefixes(
    grantee: lambda_.Function, bucket: s3.IBucket, prefixes: Iterable[str], actions: Iterable[str]
) -> None:
    for statement in prefix_statements(bucket, prefixes, actions):
        grantee.add_to_role_policy(statement)
    suppress_prefix_wildcards(grantee)
