"""Create the platform's buckets, queues and bucket→queue notifications in moto, the way the CDK stacks declare them.

Every name comes from `functions.core.names` (and the settings' bucket names), so the local platform and the
stacks cannot drift. `ensure_resources` converges: calling it again changes only what differs, and leaves an
unchanged bucket notification alone, since each put of a notification enqueues another `s3:TestEvent`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from functions.core import names
from functions.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import NotificationConfigurationTypeDef, QueueConfigurationTypeDef
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

OBJECT_CREATED: Final = "s3:ObjectCreated:*"
DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # the SQS maximum: a dead letter waits for a human as long as possible

# Which Settings field holds each queue's URL, so the runtime can point handlers at what was created here.
QUEUE_URL_SETTINGS = {
    names.INGEST_QUEUE: "ingest_queue_url",
    names.DISPATCH_QUEUE: "dispatch_queue_url",
    names.STATUS_QUEUE: "status_queue_url",
}


@dataclass(frozen=True)
class LocalResources:
    datasets_bucket: str
    artifacts_bucket: str
    queue_urls: dict[str, str]
    queue_arns: dict[str, str]
    dlq_urls: dict[str, str]
    dlq_arns: dict[str, str]

    def url(self, queue: str) -> str:
        return self.queue_urls[queue]

    def arn(self, queue: str) -> str:
        return self.queue_arns[queue]

    def settings_overrides(self) -> dict[str, str]:
        """Settings fields to update (`settings.model_copy(update=...)`) so code finds these queues."""
        return {QUEUE_URL_SETTINGS[queue]: url for queue, url in self.queue_urls.items()}


def notification_routes(datasets_bucket: str, artifacts_bucket: str) -> dict[str, list[tuple[str, str]]]:
    """bucket → [(key prefix, queue name)]: the ObjectCreated routes the control-plane stack declares."""
    routes: dict[str, list[tuple[str, str]]] = {}
    for prefix in names.INGEST_PREFIXES:
        routes.setdefault(datasets_bucket, []).append((prefix, names.INGEST_QUEUE))
    routes.setdefault(artifacts_bucket, []).append((names.ARTIFACTS_PREFIX, names.STATUS_QUEUE))
    return routes


def ensure_resources(
    s3_client: S3Client,
    sqs_client: SQSClient,
    settings: Settings,
    *,
    visibility_overrides: Mapping[str, int] | None = None,
) -> LocalResources:
    """Create or converge the buckets, queues with DLQs, queue policies and bucket notifications."""
    overrides = dict(visibility_overrides or {})
    unknown = set(overrides) - set(names.QUEUES)
    if unknown:
        raise ValueError(f"visibility_overrides names unknown queues: {sorted(unknown)}")

    datasets_bucket, artifacts_bucket = settings.aws_bucket_name, settings.artifacts_bucket
    for bucket in dict.fromkeys((datasets_bucket, artifacts_bucket)):
        _ensure_bucket(s3_client, bucket)

    queue_urls: dict[str, str] = {}
    queue_arns: dict[str, str] = {}
    dlq_urls: dict[str, str] = {}
    dlq_arns: dict[str, str] = {}
    for queue in names.QUEUES:
        dlq = names.dlq_name(queue)
        dlq_urls[queue] = _ensure_queue(sqs_client, dlq, {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)})
        dlq_arns[queue] = _queue_arn(sqs_client, dlq_urls[queue])
        redrive = {"deadLetterTargetArn": dlq_arns[queue], "maxReceiveCount": names.MAX_RECEIVE_COUNT}
        attributes = {
            "VisibilityTimeout": str(overrides.get(queue, names.visibility_timeout(queue))),
            "RedrivePolicy": json.dumps(redrive),
        }
        queue_urls[queue] = _ensure_queue(sqs_client, queue, attributes)
        queue_arns[queue] = _queue_arn(sqs_client, queue_urls[queue])

    routes = notification_routes(datasets_bucket, artifacts_bucket)
    # S3 checks that it may send to a queue when the notification is put, so the policies go first.
    senders: dict[str, list[str]] = {}
    for bucket, bucket_routes in routes.items():
        for _, queue in bucket_routes:
            senders.setdefault(queue, [])
            if bucket not in senders[queue]:
                senders[queue].append(bucket)
    for queue, buckets in senders.items():
        policy = _s3_send_policy(queue_arns[queue], buckets)
        sqs_client.set_queue_attributes(QueueUrl=queue_urls[queue], Attributes={"Policy": json.dumps(policy)})
    for bucket, bucket_routes in routes.items():
        _ensure_notification(s3_client, bucket, [(prefix, queue_arns[queue]) for prefix, queue in bucket_routes])

    return LocalResources(datasets_bucket, artifacts_bucket, queue_urls, queue_arns, dlq_urls, dlq_arns)


def _ensure_bucket(s3_client: S3Client, bucket: str) -> None:
    try:
        s3_client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    region = s3_client.meta.region_name
    try:
        if region and region != "us-east-1":  # S3 rejects a LocationConstraint of us-east-1
            s3_client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})  # type: ignore[typeddict-item]
        else:
            s3_client.create_bucket(Bucket=bucket)
        log.info("created bucket %s", bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":  # created meanwhile
            raise


def _ensure_queue(sqs_client: SQSClient, name: str, attributes: dict[str, str]) -> str:
    # CreateQueue on an existing queue fails when attributes differ, so look up first and converge after.
    try:
        url = sqs_client.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
        ):
            raise
        log.info("creating queue %s", name)
        return sqs_client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
    sqs_client.set_queue_attributes(QueueUrl=url, Attributes=attributes)  # type: ignore[arg-type]
    return url


def _queue_arn(sqs_client: SQSClient, url: str) -> str:
    return sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _s3_send_policy(queue_arn: str, buckets: list[str]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowS3BucketNotifications",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnLike": {"aws:SourceArn": [f"arn:aws:s3:::{bucket}" for bucket in buckets]}},
            }
        ],
    }


def _ensure_notification(s3_client: S3Client, bucket: str, routes: list[tuple[str, str]]) -> None:
    configs: list[QueueConfigurationTypeDef] = [
        {
            "Id": f"{queue_arn.rsplit(':', 1)[-1]}-{prefix.rstrip('/')}",
            "QueueArn": queue_arn,
            "Events": [OBJECT_CREATED],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
        }
        for prefix, queue_arn in routes
    ]
    wanted: NotificationConfigurationTypeDef = {"QueueConfigurations": configs}
    current = s3_client.get_bucket_notification_configuration(Bucket=bucket)
    if _canonical(dict(current)) == _canonical(dict(wanted)):
        return
    s3_client.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=wanted)
    log.info("bucket %s notifies %s", bucket, ", ".join(f"{prefix}→{arn}" for prefix, arn in routes))


def _canonical(config: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a notification configuration routes, ignoring ids, order and the casing S3 gives filter names."""
    queues = sorted(
        (
            entry["QueueArn"],
            tuple(sorted(entry.get("Events", []))),
            tuple(
                sorted(
                    (rule["Name"].lower(), rule["Value"])
                    for rule in entry.get("Filter", {}).get("Key", {}).get("FilterRules", [])
                )
            ),
        )
        for entry in config.get("QueueConfigurations", [])
    )
    others = tuple(
        bool(config.get(key))
        for key in ("TopicConfigurations", "LambdaFunctionConfigurations", "EventBridgeConfiguration")
    )
    return tuple(queues), others
