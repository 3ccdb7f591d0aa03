"""Where model files and their metadata live: S3 (a bucket and optional prefix) or a local directory for offline dev.

Keys are relative (`tabular/{tenant}/...`); both stores speak bytes. `put(..., exclusive=True)` claims a key only if
it does not exist yet (S3 `If-None-Match: *`, a local `open(..., "xb")`), so two uploads cannot take one version.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import ClientError

from ministudio_common import s3uri


class KeyExists(Exception):
    """An exclusive put found the key already there."""


class BlobStore(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes, *, exclusive: bool = False) -> None: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> list[str]: ...

    def describe(self) -> str: ...


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", client: Any | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client = client

    @property
    def s3(self) -> Any:
        if self._client is None:  # created on first use: boto3 honours AWS_ENDPOINT_URL (moto) by itself
            self._client = s3uri.client()
        return self._client

    def get(self, key: str) -> bytes | None:
        try:
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return body

    def put(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        extra = {"IfNoneMatch": "*"} if exclusive else {}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, **extra)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise KeyExists(key) from exc
            raise

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            keys.extend(obj["Key"][len(self.prefix) :] for obj in page.get("Contents", []))
        return keys

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):  # keys are built from validated names; this is the belt to the braces
            raise ValueError(f"key escapes the store: {key!r}")
        return path

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.is_file() else None

    def put(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if exclusive:
            try:
                with path.open("xb") as f:
                    f.write(data)
            except FileExistsError as exc:
                raise KeyExists(key) from exc
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # readers never see half a file

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix.rstrip("/") else self.root
        if not base.is_dir():
            return []
        found = (p for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))
        return sorted(p.relative_to(self.root).as_posix() for p in found)

    def describe(self) -> str:
        return str(self.root)


def build_store(location: str) -> BlobStore:
    """`s3://bucket[/prefix]` or a directory path."""
    if s3uri.is_s3(location):
        bucket, prefix = s3uri.split(location)
        return S3Store(bucket, prefix)
    return LocalStore(Path(location))
