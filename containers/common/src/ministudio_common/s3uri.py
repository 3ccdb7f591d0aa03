"""`s3://bucket/key` URIs: parse, download a prefix, upload a directory. boto3 honours AWS_ENDPOINT_URL (moto)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def client() -> Any:
    import boto3

    return boto3.client("s3")


def download(uri: str, dest: Path, s3: Any | None = None) -> Path:
    """Download one object, or every object under a prefix (URI ending with '/'), into dest."""
    s3 = s3 or client()
    bucket, key = split(uri)
    if key and not key.endswith("/"):
        dest.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(dest))
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    found = False
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(key) :]
            if not rel or rel.endswith("/"):
                continue
            found = True
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
    if not found:
        raise FileNotFoundError(f"nothing under {uri}")
    return dest


def upload_dir(src: Path, uri: str, s3: Any | None = None) -> list[str]:
    s3 = s3 or client()
    bucket, prefix = split(uri)
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    keys = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        key = prefix + path.relative_to(src).as_posix()
        s3.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys


def upload_bytes(data: bytes, uri: str, s3: Any | None = None, content_type: str = "application/json") -> None:
    s3 = s3 or client()
    bucket, key = split(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
