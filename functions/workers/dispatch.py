"""Dispatch worker: `{"job_id", "action": "start"|"cancel"}` → the training backend, and
`{"deployment_id", "action": "deploy"|"delete"}` → the serving backend; idempotent either way."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.compute import get_serving_backend, get_training_backend
from functions.core.observability import correlation_id
from functions.core.settings import get_settings
from functions.deployments import lifecycle as deployments
from functions.jobs import launch
from functions.store.cache import get_cache
from functions.store.mongo import get_store

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    correlation_id.set(record.message_id)
    settings = get_settings()
    message = _deployment_message(record.body)
    if message is not None:
        deployment_id, action = message
        backend = get_serving_backend(settings)
        deployments.handle(get_store(), get_cache(), backend, settings, deployment_id, action)
        return
    launch.handle(get_store(), get_training_backend(settings), settings, record.body)


def _deployment_message(body: str) -> tuple[str, str] | None:
    try:
        message = json.loads(body)
    except ValueError:
        return None  # the job parser reports what is wrong with it
    if not isinstance(message, dict) or "deployment_id" not in message:
        return None
    if not isinstance(message["deployment_id"], str):
        raise ValueError("deployment_id must be a string")
    return message["deployment_id"], str(message.get("action", "deploy"))


def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
