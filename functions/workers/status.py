"""Status worker: the trainer's artifacts (S3 ObjectCreated via SQS) → job progress, checkpoints and results; and
where the runs are this process's children (the local backend), their exits → the job, at once."""

from __future__ import annotations

import functools
import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.compute.base import ReportsRunExits, TrainingBackend
from functions.core.observability import correlation_id
from functions.core.s3events import parse_notification
from functions.core.settings import get_settings
from functions.jobs import progress, recovery
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


def watch_runs(backend: TrainingBackend) -> bool:
    """Settle a job the moment its run exits (a killed trainer fails its job in about a second), by the reconciler's
    rules, instead of at the reconciler's next quiet check. Only a backend that watches its runs (local) can;
    result.json's own event still arrives, and whichever comes second moves nothing."""
    if not isinstance(backend, ReportsRunExits):
        return False
    backend.add_exit_listener(functools.partial(run_ended, backend))
    return True


def run_ended(backend: TrainingBackend, run_name: str) -> None:
    correlation_id.set(f"run-exit:{run_name}")
    settings = get_settings()
    recovery.settle_run(get_store(), get_blobs(), backend, settings, run_name)
