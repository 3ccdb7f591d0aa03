"""The ingest worker's logic: an S3 ObjectCreated notification → the dataset it belongs to → validated | invalid.

Keys arrive URL-encoded (`quote_plus`; moto encodes '/' too), S3 sends an `s3:TestEvent` when a notification is
configured, and SQS delivers at least once: every step is idempotent (conditional status updates, dataset ids
derived from the object for dropped files).
"""

from __future__ import annotations

from collections.abc import Callable

from functions.core import ids, names
from functions.core.models import Dataset, DatasetStatus, UploadStatus, now
from functions.core.observability import log
from functions.core.s3events import ObjectEvent, parse_notification
from functions.core.settings import Settings
from functions.datasets import uploads
from functions.datasets.filenames import display_filename
from functions.datasets.validate import Limits, LineError, ValidationReport, validate_stream
from functions.store.blobs import Blobs
from functions.store.mongo import Store


def handle_message(
    store: Store,
    blobs: Blobs,
    settings: Settings,
    body: str,
    on_validated: Callable[[Dataset], object] | None = None,
) -> None:
    """`on_validated` runs for each dataset whose validation finished (jobs waiting on it move on)."""
    for event in parse_notification(body):
        dataset = locate(store, settings, event)
        if dataset is not None:
            done = validate(store, blobs, settings, dataset)
            if done is not None and on_validated is not None:
                on_validated(done)


def locate(store: Store, settings: Settings, event: ObjectEvent) -> Dataset | None:
    """The dataset record an object belongs to, registering dropped and presigned files; None to ignore it."""
    parts = event.key.split("/")
    prefix = parts[0] + "/"
    if len(parts) < 3 or event.key.endswith("/"):
        log("info", "ingest: ignoring key outside the dataset layout", key=event.key)
        return None
    client_code = parts[1]
    if prefix == names.DATASETS_PREFIX:
        dataset = store.datasets.by_key(event.bucket, event.key)
        if dataset is None:
            log("warning", "ingest: no dataset record for object", bucket=event.bucket, key=event.key)
        return dataset
    if prefix == names.UPLOADS_PREFIX:
        return _from_upload(store, event, client_code, parts)
    if prefix == names.INCOMING_PREFIX:
        return _from_incoming(store, event, client_code, parts)
    log("info", "ingest: ignoring key outside the ingest prefixes", key=event.key)
    return None


def _from_upload(store: Store, event: ObjectEvent, client_code: str, parts: list[str]) -> Dataset | None:
    if len(parts) != 4 or parts[3] != "data":
        return None  # upload parts: assembled when the upload completes
    upload = store.uploads.get(parts[2], client_code)
    if upload is None or upload.status == UploadStatus.cancelled:
        log("warning", "ingest: object for an unknown or cancelled upload", key=event.key)
        return None
    return uploads.register(store, upload)


def _from_incoming(store: Store, event: ObjectEvent, client_code: str, parts: list[str]) -> Dataset | None:
    if store.tenants.get(client_code) is None:
        log("warning", "ingest: file dropped for an unknown tenant; left in place", key=event.key, client=client_code)
        return None
    # Same object (key + etag + sequencer) → same id, so a redelivered event never registers it twice.
    file_id = ids.derived_id("file-", event.bucket, event.key, event.etag, event.sequencer)
    dataset, created = store.datasets.insert_once(
        Dataset(
            id=file_id,
            client_code=client_code,
            filename=display_filename(parts[-1]),  # nobody to answer a 400: a bad name gets the fallback
            bucket=event.bucket,
            s3_key=event.key,
            bytes=event.size,
            source="incoming",
        )
    )
    if created:
        log("info", "ingest: registered dropped file", file_id=file_id, key=event.key)
    return dataset


def validate(store: Store, blobs: Blobs, settings: Settings, dataset: Dataset) -> Dataset | None:
    # `validating` is accepted too: a worker that crashed mid-validation leaves it there and the redelivery resumes.
    started = store.datasets.transition(
        dataset.id, [DatasetStatus.uploaded, DatasetStatus.validating], DatasetStatus.validating
    )
    if started is None:
        log("info", "ingest: dataset already validated; duplicate delivery ignored", file_id=dataset.id)
        return None
    info = blobs.head(dataset.bucket, dataset.s3_key)
    if info is None:
        report = _file_error(0, "the file was deleted from storage before it could be validated")
    elif info.size > settings.max_dataset_bytes:
        report = _file_error(info.size, f"the file is {info.size} bytes; the limit is {settings.max_dataset_bytes}")
    elif dataset.source == "upload" and _declared(store, dataset) not in (None, info.size):
        report = _file_error(
            info.size, f"the upload declared {_declared(store, dataset)} bytes but {info.size} arrived"
        )
    else:
        limits = Limits(
            max_bytes=settings.max_dataset_bytes,
            max_line_bytes=settings.max_line_bytes,
            min_examples=settings.min_examples,
            max_errors=settings.max_validation_errors,
        )
        report = validate_stream(blobs.iter_chunks(dataset.bucket, dataset.s3_key), limits)
    status = DatasetStatus.validated if report.valid else DatasetStatus.invalid
    done = store.datasets.transition(
        dataset.id,
        [DatasetStatus.validating],
        status,
        validation=report.to_dict(),
        validated_at=now(),
        bytes=info.size if info else dataset.bytes,
    )
    log("info", "ingest: dataset validated", file_id=dataset.id, status=status.value, errors=report.error_count)
    return done


def _declared(store: Store, dataset: Dataset) -> int | None:
    upload_id = dataset.s3_key.split("/")[2]
    upload = store.uploads.get(upload_id)
    return upload.bytes if upload else None


def _file_error(size: int, reason: str) -> ValidationReport:
    return ValidationReport(
        valid=False,
        format=None,
        examples=0,
        lines=0,
        bytes=size,
        token_estimate=0,
        messages=0,
        error_count=1,
        errors=[LineError(line=None, reason=reason, field=None)],
    )
