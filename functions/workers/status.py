"""Status worker: the trainer's artifacts (S3 ObjectCreated via SQS) → job progress, checkpoints and results."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.core.observability import correlation_id
from functions.core.s3events import parse_notification
from functions.core.settings import get_settings
from functions.jobs import progress
from functions.store.blobs import get_blobs
from functions.store.mongo import get_store

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    """Two shapes share this queue: S3 notifications for the trainer's artifacts, and EventBridge events with
    a backend's state changes (SageMaker training jobs)."""
    correlation_id.set(record.message_id)
    body = json.loads(record.body)
    if isinstance(body, dict) and "detail-type" in body:
        progress.on_backend_event(get_store(), get_blobs(), get_settings().artifacts_bucket, body)
        return
    for event in parse_notification(record.body):
        progress.handle_object(get_store(), get_blobs(), event)


def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
