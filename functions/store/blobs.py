"""S3: streamed puts and gets, presigned POSTs, part assembly. boto3 is imported on first use (cold start)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from functions.core.lazy import Lazy
from functions.core.settings import Settings, get_settings
from functions.store.aws import aws_client

CHUNK = 1024 * 1024


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
        self._client = Lazy(lambda: aws_client("s3", settings, signature_version="s3v4"))

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

    def concat(self, bucket: str, part_keys: list[str], dest_key: str, content_type: str) -> None:
        """Assemble parts into one object by streaming them through (parts may be smaller than S3's 5 MB)."""
        self.put_stream(bucket, dest_key, _ChainedReader(self, bucket, part_keys), content_type)


class _ChainedReader:
    """A read()-able stream over several S3 objects in order, one chunk in memory at a time."""

    def __init__(self, blobs: Blobs, bucket: str, keys: list[str]) -> None:
        self._chunks = (chunk for key in keys for chunk in blobs.iter_chunks(bucket, key))
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


_blobs = Lazy(lambda: Blobs(get_settings()))


def get_blobs() -> Blobs:
    return _blobs.get()


def reset_blobs(blobs: Blobs | None = None) -> None:
    _blobs.reset(blobs)
