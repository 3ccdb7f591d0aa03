"""Dispatch worker: `{"job_id", "action": "start"|"cancel"}` from SQS → the compute backend, idempotently."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.compute import get_training_backend
from functions.core.observability import correlation_id
from functions.core.settings import get_settings
from functions.jobs import dispatch
from functions.store.mongo import get_store

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    correlation_id.set(record.message_id)
    settings = get_settings()
    dispatch.handle(get_store(), get_training_backend(settings), settings, record.body)


def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
