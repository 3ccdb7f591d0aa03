"""OpenAI's Uploads API (create → parts → complete → a File; cancel), plus a presigned S3 POST for each upload.

A client either adds parts through the API or POSTs the whole file straight to S3 with `presigned_post`; both end
as one object at `uploads/{client}/{upload_id}/data`, whose ObjectCreated event validates it. The dataset id is
fixed when the upload is created, so completing the upload and the S3 event register the same record once.

Completing joins the parts, in the order of `part_ids`, with one S3 multipart upload: a part of 5 MiB or more (or
the last one) is copied inside S3 (UploadPartCopy), so a 5 GiB upload completes without its bytes passing through
the API. S3 wants every part but the last to hold at least 5 MiB; smaller parts are allowed (OpenAI allows them),
but they are joined by reading them through the API, and an upload may need at most
`upload_read_through_max_bytes` (64 MiB) of that. An upload no bigger than that may use parts of any size; a
bigger one whose small parts add up to more is refused: when a part arrives if it can be told then, else at
completion. `md5` is checked before anything is written when the upload is no bigger than that limit; a bigger
one cannot be hashed here in time, so it is recorded on the object (`x-amz-meta-md5`) for the ingest worker,
which reads every byte anyway, to compare.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from typing import IO, Any

from functions.core import ids, names
from functions.core.errors import InvalidRequest, NotFound, PayloadTooLarge, UnsupportedMediaType
from functions.core.models import Dataset, Upload, UploadStatus, now
from functions.core.settings import Settings
from functions.datasets.filenames import clean_filename
from functions.datasets.intake import check_filename, check_purpose, sniff
from functions.store.blobs import MIN_PART, Blobs, plan_parts, read_through_bytes
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


def retrieve(store: Store, client_code: str, upload_id: str) -> tuple[Upload, Dataset | None]:
    """The upload and the File it became (None until it is completed)."""
    upload = get(store, client_code, upload_id)
    return upload, store.datasets.get(upload.file_id, client_code)


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
    _check_small_parts([p["bytes"] for p in upload.parts] + [size], settings.upload_read_through_max_bytes)
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
    store: Store,
    blobs: Blobs,
    settings: Settings,
    client_code: str,
    upload_id: str,
    part_ids: list[str],
    md5: str | None = None,
) -> tuple[Upload, Dataset]:
    upload = get(store, client_code, upload_id)
    if upload.status == UploadStatus.completed:
        dataset = store.datasets.get(upload.file_id, client_code)
        if dataset is not None:
            return upload, dataset
    upload = _pending(store, client_code, upload_id)
    expected_md5 = _md5_hex(md5) if md5 else None
    if part_ids:
        try:
            _assemble(blobs, settings, upload, part_ids, expected_md5)
        except Exception:
            done = get(store, client_code, upload_id)  # a concurrent complete may have won (and removed the parts)
            dataset = store.datasets.get(upload.file_id, client_code)
            if done.status == UploadStatus.completed and dataset is not None:
                return done, dataset
            raise
        if get(store, client_code, upload_id).status == UploadStatus.cancelled:
            blobs.delete(upload.bucket, upload.key)  # cancelled while assembling: nothing may stay behind
            raise InvalidRequest(f"upload {upload_id!r} was cancelled", param="upload_id")
    else:
        info = blobs.head(upload.bucket, upload.key)
        if info is None:
            raise InvalidRequest(
                "no parts given and nothing was POSTed to presigned_post yet: add parts or upload the file first",
                param="part_ids",
            )
        if info.size != upload.bytes:
            raise InvalidRequest(f"the uploaded object holds {info.size} bytes, not {upload.bytes}", param="bytes")
        # A single POST's ETag is its MD5 (a multipart or KMS-encrypted object's is not, and is not compared).
        if expected_md5 and re.fullmatch(r"[0-9a-f]{32}", info.etag) and info.etag != expected_md5:
            raise InvalidRequest(f"the uploaded object's md5 is {info.etag}, not {expected_md5}", param="md5")
    dataset = register(store, upload)
    blobs.delete_prefix(upload.bucket, upload_prefix(client_code, upload_id) + "parts/")
    return get(store, client_code, upload_id), dataset


def _assemble(blobs: Blobs, settings: Settings, upload: Upload, part_ids: list[str], md5: str | None) -> None:
    by_id = {p["id"]: p for p in upload.parts}
    unknown = [p for p in part_ids if p not in by_id]
    if unknown:
        raise InvalidRequest(f"unknown part ids {unknown} for upload {upload.id!r}", param="part_ids")
    if len(set(part_ids)) != len(part_ids):
        raise InvalidRequest("part_ids lists a part more than once", param="part_ids")
    total = sum(by_id[p]["bytes"] for p in part_ids)
    if total != upload.bytes:
        raise InvalidRequest(f"the parts hold {total} bytes but the upload declared {upload.bytes}", param="part_ids")
    plan = plan_parts([(by_id[p]["key"], by_id[p]["bytes"]) for p in part_ids])
    limit = settings.upload_read_through_max_bytes
    if read_through_bytes(plan) > limit:
        raise InvalidRequest(
            f"parts under {MIN_PART} bytes are joined through the API, at most {limit} bytes per upload; "
            f"this order needs {read_through_bytes(plan)}: make every part but the last at least {MIN_PART} bytes",
            param="part_ids",
        )
    if md5 and upload.bytes <= limit:
        got = hashlib.md5(usedforsecurity=False)
        for part in plan:
            for seg in part:
                got.update(blobs.read_range(upload.bucket, seg))
        if got.hexdigest() != md5:
            raise InvalidRequest(f"the parts' md5 is {got.hexdigest()}, not {md5}", param="md5")
    metadata = {"md5": md5} if md5 else None
    blobs.assemble(upload.bucket, upload.key, plan, upload.mime_type, metadata)


def _check_small_parts(sizes: list[int], limit: int) -> None:
    """Refuse a part once no order of the parts could be joined within `limit`: every part under S3's minimum but
    the one placed last is read through the API."""
    small = [size for size in sizes if size < MIN_PART]
    if small and sum(small) - max(small) > limit:
        raise InvalidRequest(
            f"parts under {MIN_PART} bytes are joined through the API, at most {limit} bytes per upload: "
            f"make every part but the last at least {MIN_PART} bytes",
            param="data",
        )


def _md5_hex(value: str) -> str:
    """OpenAI does not say how md5 is spelled: hex (hashlib's hexdigest) or base64 (HTTP's Content-MD5)."""
    if re.fullmatch(r"[0-9a-fA-F]{32}", value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise InvalidRequest("md5 must be 32 hex digits (or the 16 bytes in base64)", param="md5")
    return raw.hex()


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
    prefix = upload_prefix(client_code, upload_id)
    blobs.abort_multipart_uploads(upload.bucket, prefix)  # a completion cut off mid-way (a Lambda timeout)
    blobs.delete_prefix(upload.bucket, prefix)
    return get(store, client_code, upload_id)
