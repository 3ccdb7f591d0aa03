"""Ingest worker: S3 ObjectCreated (via SQS) → dataset validation. Partial batch responses: one bad record
retries alone and reaches the DLQ after maxReceiveCount; the others are deleted."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.core.observability import correlation_id
from functions.core.settings import get_settings
from functions.datasets.ingest import handle_message
from functions.jobs.service import promote_waiting
from functions.store.blobs import get_blobs
from functions.store.mongo import get_store
from functions.store.queues import get_queues

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    correlation_id.set(record.message_id)
    store = get_store()
    handle_message(
        store, get_blobs(), get_settings(), record.body, lambda dataset: promote_waiting(store, get_queues(), dataset)
    )


def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
