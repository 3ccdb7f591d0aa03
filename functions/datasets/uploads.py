"""OpenAI's Uploads API (create → parts → complete → a File; cancel), plus a presigned S3 POST for each upload.

A client either adds parts through the API or POSTs the whole file straight to S3 with `presigned_post`; both end
as one object at `uploads/{client}/{upload_id}/data`, whose ObjectCreated event validates it. The dataset id is
fixed when the upload is created, so completing the upload and the S3 event register the same record once.
"""

from __future__ import annotations

import time
from typing import IO, Any

from functions.core import ids, names
from functions.core.errors import InvalidRequest, NotFound, PayloadTooLarge, UnsupportedMediaType
from functions.core.models import Dataset, Upload, UploadStatus, now
from functions.core.settings import Settings
from functions.datasets.filenames import clean_filename
from functions.datasets.registry import check_filename, check_purpose, sniff
from functions.store.blobs import Blobs
from functions.store.mongo import Store

MIME_TYPES = ("application/jsonl", "application/x-ndjson", "application/json", "text/jsonl", "text/plain")


def upload_prefix(client_code: str, upload_id: str) -> str:
    return f"{names.UPLOADS_PREFIX}{client_code}/{upload_id}/"


def create(
    store: Store, blobs: Blobs, settings: Settings, client_code: str, filename: str, purpose: str, size: int, mime: str
) -> tuple[Upload, dict[str, Any]]:
    check_purpose(purpose)
    filename = clean_filename(filename)
    check_filename(filename, param="filename")
    if mime not in MIME_TYPES:
        raise UnsupportedMediaType(
            f"mime_type {mime!r} is not supported; use one of {list(MIME_TYPES)}", param="mime_type"
        )
    if size < 1:
        raise InvalidRequest("bytes must be at least 1", param="bytes")
    if size > settings.max_dataset_bytes:
        raise PayloadTooLarge(f"bytes {size} exceeds the limit of {settings.max_dataset_bytes}", param="bytes")
    upload_id = ids.new_id("upload_")
    created = now()
    upload = Upload(
        id=upload_id,
        client_code=client_code,
        filename=filename,
        purpose=purpose,
        bytes=size,
        mime_type=mime,
        bucket=settings.aws_bucket_name,
        key=upload_prefix(client_code, upload_id) + "data",
        file_id=ids.new_id("file-"),
        created_at=created,
        expires_at=created + settings.upload_expiry_seconds,
    )
    store.uploads.insert(upload)
    # The POST policy pins the key and the size: S3 refuses anything else (moto does not enforce policies, so the
    # ingest worker checks the stored size against the upload too).
    post = blobs.presigned_post(upload.bucket, upload.key, size, settings.upload_expiry_seconds)
    return upload, post


def get(store: Store, client_code: str, upload_id: str) -> Upload:
    upload = store.uploads.get(upload_id, client_code)
    if upload is None:
        raise NotFound(f"upload {upload_id!r} not found", param="upload_id")
    if upload.status == UploadStatus.pending and upload.expires_at < time.time():
        upload.status = UploadStatus.expired
    return upload


def _pending(store: Store, client_code: str, upload_id: str) -> Upload:
    upload = get(store, client_code, upload_id)
    if upload.status != UploadStatus.pending:
        raise InvalidRequest(f"upload {upload_id!r} is {upload.status.value}, not pending", param="upload_id")
    return upload


def add_part(
    store: Store, blobs: Blobs, settings: Settings, client_code: str, upload_id: str, stream: IO[bytes], size: int
) -> dict[str, Any]:
    upload = _pending(store, client_code, upload_id)
    if size < 1:
        raise InvalidRequest("the part is empty", param="data")
    if size > settings.upload_part_max_bytes:
        raise PayloadTooLarge(f"a part may hold at most {settings.upload_part_max_bytes} bytes", param="data")
    received = sum(p["bytes"] for p in upload.parts)
    if received + size > upload.bytes:
        raise InvalidRequest(
            f"parts would hold {received + size} bytes but the upload declared {upload.bytes}", param="data"
        )
    if not upload.parts:
        head = stream.read(4096)
        stream.seek(0)
        sniff(head, param="data")
    part_id = ids.new_id("part_")
    key = upload_prefix(client_code, upload_id) + f"parts/{part_id}"
    blobs.put_stream(upload.bucket, key, stream, "application/octet-stream")
    part = {"id": part_id, "key": key, "bytes": size, "created_at": now()}
    if store.uploads.add_part(upload_id, part) is None:
        blobs.delete(upload.bucket, key)
        raise InvalidRequest(f"upload {upload_id!r} is no longer pending", param="upload_id")
    return part


def complete(
    store: Store, blobs: Blobs, client_code: str, upload_id: str, part_ids: list[str]
) -> tuple[Upload, Dataset]:
    upload = get(store, client_code, upload_id)
    if upload.status == UploadStatus.completed:
        dataset = store.datasets.get(upload.file_id, client_code)
        if dataset is not None:
            return upload, dataset
    upload = _pending(store, client_code, upload_id)
    if part_ids:
        by_id = {p["id"]: p for p in upload.parts}
        unknown = [p for p in part_ids if p not in by_id]
        if unknown:
            raise InvalidRequest(f"unknown part ids {unknown} for upload {upload_id!r}", param="part_ids")
        if len(set(part_ids)) != len(part_ids):
            raise InvalidRequest("part_ids lists a part more than once", param="part_ids")
        total = sum(by_id[p]["bytes"] for p in part_ids)
        if total != upload.bytes:
            raise InvalidRequest(
                f"the parts hold {total} bytes but the upload declared {upload.bytes}", param="part_ids"
            )
        blobs.concat(upload.bucket, [by_id[p]["key"] for p in part_ids], upload.key, upload.mime_type)
    else:
        info = blobs.head(upload.bucket, upload.key)
        if info is None:
            raise InvalidRequest(
                "no parts given and nothing was POSTed to presigned_post yet: add parts or upload the file first",
                param="part_ids",
            )
        if info.size != upload.bytes:
            raise InvalidRequest(f"the uploaded object holds {info.size} bytes, not {upload.bytes}", param="bytes")
    dataset = register(store, upload)
    blobs.delete_prefix(upload.bucket, upload_prefix(client_code, upload_id) + "parts/")
    return get(store, client_code, upload_id), dataset


def register(store: Store, upload: Upload) -> Dataset:
    """Record the upload's object as a dataset (idempotent) and mark the upload completed."""
    dataset, _ = store.datasets.insert_once(
        Dataset(
            id=upload.file_id,
            client_code=upload.client_code,
            filename=upload.filename,
            purpose=upload.purpose,
            bucket=upload.bucket,
            s3_key=upload.key,
            bytes=upload.bytes,
            source="upload",
        )
    )
    store.uploads.transition(upload.id, UploadStatus.pending, UploadStatus.completed)
    return dataset


def cancel(store: Store, blobs: Blobs, client_code: str, upload_id: str) -> Upload:
    upload = _pending(store, client_code, upload_id)
    if store.uploads.transition(upload_id, UploadStatus.pending, UploadStatus.cancelled) is None:
        raise InvalidRequest(f"upload {upload_id!r} is no longer pending", param="upload_id")
    blobs.delete_prefix(upload.bucket, upload_prefix(client_code, upload_id))
    return get(store, client_code, upload_id)
