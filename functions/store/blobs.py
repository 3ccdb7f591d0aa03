"""S3: streamed puts and gets, presigned POSTs, multipart assembly. boto3 is imported on first use (cold start)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Protocol

from functions.core.lazy import Lazy
from functions.core.settings import Settings, get_settings
from functions.store.aws import aws_client

CHUNK = 1024 * 1024
MIN_PART = 5 * 1024 * 1024  # S3: every part of a multipart upload but the last holds at least this
MAX_PARTS = 10_000  # S3: parts in one multipart upload
PART_THREADS = 16  # parts copied at once: 80 parts of 64 MiB (5 GiB) in a few seconds


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str
    content_type: str | None


class Blobs:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = Lazy(
            lambda: aws_client("s3", settings, signature_version="s3v4", max_pool_connections=PART_THREADS + 4)
        )

    @property
    def client(self) -> Any:
        return self._client.get()

    def put_stream(self, bucket: str, key: str, stream: Readable, content_type: str = "application/jsonl") -> None:
        # upload_fileobj streams in parts (multipart above 8 MB): never the whole body in memory.
        self.client.upload_fileobj(stream, bucket, key, ExtraArgs={"ContentType": content_type})

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            meta = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(int(meta["ContentLength"]), meta.get("ETag", "").strip('"'), meta.get("ContentType"))

    def iter_chunks(self, bucket: str, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def get_json_object(self, bucket: str, key: str, max_bytes: int = 1024 * 1024) -> dict[str, Any] | None:
        """A small JSON object (trainer status files); None when absent. Larger or non-object content raises."""
        import json

        info = self.head(bucket, key)
        if info is None:
            return None
        if info.size > max_bytes:
            raise ValueError(f"s3://{bucket}/{key} is {info.size} bytes; refusing to parse more than {max_bytes}")
        value = json.loads(b"".join(self.iter_chunks(bucket, key)))
        if not isinstance(value, dict):
            raise ValueError(f"s3://{bucket}/{key} is not a JSON object")
        return value

    def delete(self, bucket: str, key: str) -> None:
        self.client.delete_object(Bucket=bucket, Key=key)

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        deleted = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
        return deleted

    def presigned_post(self, bucket: str, key: str, max_bytes: int, expires_in: int) -> dict[str, Any]:
        post: dict[str, Any] = self.client.generate_presigned_post(
            Bucket=bucket,
            Key=key,
            Conditions=[["content-length-range", 1, max_bytes], {"key": key}],
            ExpiresIn=expires_in,
        )
        return post

    def assemble(
        self,
        bucket: str,
        dest_key: str,
        plan: Sequence[Sequence[Segment]],
        content_type: str,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Write `plan` (from `plan_parts`) to `dest_key` as one S3 multipart upload. A one-range part is copied
        inside S3 (UploadPartCopy) and never passes through this process; only a part joined from several ranges
        (pieces under S3's 5 MiB minimum) is read and sent. Fails whole: on any error the multipart upload is
        aborted, so nothing lands at `dest_key` and no parts are left behind."""
        from concurrent.futures import ThreadPoolExecutor

        if not plan or len(plan) > MAX_PARTS:
            raise ValueError(f"a multipart upload holds 1 to {MAX_PARTS} parts, not {len(plan)}")
        created = self.client.create_multipart_upload(
            Bucket=bucket, Key=dest_key, ContentType=content_type, Metadata=metadata or {}
        )
        upload_id = created["UploadId"]
        pool = ThreadPoolExecutor(max_workers=min(PART_THREADS, len(plan)))
        try:
            futures = [
                pool.submit(self._put_part, bucket, dest_key, upload_id, number, part)
                for number, part in enumerate(plan, start=1)
            ]
            parts = [{"PartNumber": n, "ETag": f.result()} for n, f in enumerate(futures, start=1)]
            self.client.complete_multipart_upload(
                Bucket=bucket, Key=dest_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            # Parts still in flight would outlive an abort sent now: let them end first.
            pool.shutdown(wait=True, cancel_futures=True)
            with suppress(Exception):  # the first error is the one to see; the bucket's lifecycle rule aborts it
                self.client.abort_multipart_upload(Bucket=bucket, Key=dest_key, UploadId=upload_id)
            raise
        finally:
            pool.shutdown(wait=True)

    def _put_part(self, bucket: str, key: str, upload_id: str, number: int, part: Sequence[Segment]) -> str:
        target = {"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": number}
        if len(part) == 1:
            (seg,) = part
            copied = self.client.upload_part_copy(
                **target, CopySource={"Bucket": bucket, "Key": seg.key}, CopySourceRange=seg.http_range
            )
            return str(copied["CopyPartResult"]["ETag"])
        body = b"".join(self.read_range(bucket, seg) for seg in part)
        return str(self.client.upload_part(**target, Body=body)["ETag"])

    def read_range(self, bucket: str, seg: Segment) -> bytes:
        body = self.client.get_object(Bucket=bucket, Key=seg.key, Range=seg.http_range)["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        if len(data) != seg.size:
            raise ValueError(f"s3://{bucket}/{seg.key} {seg.http_range} gave {len(data)} bytes, not {seg.size}")
        return data

    def abort_multipart_uploads(self, bucket: str, prefix: str) -> int:
        """Abort every multipart upload still open under `prefix` (an assembly cut off mid-way); returns how many."""
        aborted = 0
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
            for open_upload in page.get("Uploads", []):
                self.client.abort_multipart_upload(
                    Bucket=bucket, Key=open_upload["Key"], UploadId=open_upload["UploadId"]
                )
                aborted += 1
        return aborted


@dataclass(frozen=True)
class Segment:
    """Bytes [start, end) of the object at `key`."""

    key: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def http_range(self) -> str:
        return f"bytes={self.start}-{self.end - 1}"


def plan_parts(sources: Sequence[tuple[str, int]], min_part: int = MIN_PART) -> list[list[Segment]]:
    """S3 parts that join `sources` (key, size), in order, into one object, keeping S3's rule that every part but
    the last holds at least `min_part` bytes.

    A source of `min_part` or more (or the last one) is a part of its own, copied inside S3. Smaller sources are
    joined, in order, into a part that is read through this process; a join still short of `min_part` takes just
    enough bytes from the front of the next source, whose rest stays a copied part when it is still big enough.
    So a part joined from several segments holds less than twice `min_part` bytes, and only those are ever read."""
    plan: list[list[Segment]] = []
    joined: list[Segment] = []
    joined_bytes = 0
    for index, (key, size) in enumerate(sources):
        if size < 1:
            raise ValueError(f"source {key!r} is empty")
        last = index == len(sources) - 1
        start = 0
        if joined:
            need = min_part - joined_bytes
            rest = size - need
            take = need if rest >= min_part or (last and rest > 0) else size
            joined.append(Segment(key, 0, take))
            joined_bytes += take
            start = take
            if joined_bytes >= min_part or last:
                plan.append(joined)
                joined, joined_bytes = [], 0
            if start == size:
                continue
        if size - start >= min_part or last:
            plan.append([Segment(key, start, size)])
        else:
            joined, joined_bytes = [Segment(key, start, size)], size - start
    if joined:
        plan.append(joined)
    return plan


def read_through_bytes(plan: Sequence[Sequence[Segment]]) -> int:
    """Bytes that assembling `plan` reads through this process (parts joined from several segments)."""
    return sum(seg.size for part in plan if len(part) > 1 for seg in part)


_blobs = Lazy(lambda: Blobs(get_settings()))


def get_blobs() -> Blobs:
    return _blobs.get()


def reset_blobs(blobs: Blobs | None = None) -> None:
    _blobs.reset(blobs)
