"""Registering training files: up-front checks, S3 keys under the tenant's prefix, the DFS mirror, deletion.

Uploads are checked before they are stored (extension, binary content, a first line that can't start a JSON
object) so an obvious mistake is a 415/422 at once; the full validation runs in the ingest worker.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from functions.core import ids, names
from functions.core.errors import InvalidRequest, NotFound, Unprocessable, UnsupportedMediaType
from functions.core.models import Dataset, DatasetStatus
from functions.core.settings import Settings
from functions.datasets.filenames import clean_filename, display_filename
from functions.store.blobs import Blobs
from functions.store.mongo import Store
from functions.store.paging import Page

ALLOWED_EXTENSIONS = (".jsonl", ".json", ".ndjson")
PURPOSES = ("fine-tune",)
SNIFF_BYTES = 64 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(filename: str) -> str:
    base = os.path.basename(filename.replace("\\", "/")) or "dataset.jsonl"
    return (_UNSAFE.sub("_", base).strip("._") or "dataset.jsonl")[:128]


def check_purpose(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise InvalidRequest(f"purpose {purpose!r} is not supported; use one of {list(PURPOSES)}", param="purpose")
    return purpose


def check_filename(filename: str, param: str = "file") -> None:
    if not filename.lower().endswith(ALLOWED_EXTENSIONS):
        raise UnsupportedMediaType(
            f"{filename!r} is not a JSONL file: upload one JSON object per line with extension .jsonl", param=param
        )


def sniff(head: bytes, param: str = "file") -> None:
    """Reject content that cannot be JSONL from its first bytes."""
    if not head.strip():
        raise Unprocessable("the file is empty: upload one JSON object per line", param=param)
    if b"\x00" in head:
        raise UnsupportedMediaType("the file is binary (it contains NUL bytes), not JSONL text", param=param)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the sniff boundary is fine
            line = head.count(b"\n", 0, exc.start) + 1
            raise UnsupportedMediaType(
                f"the file is not UTF-8 text (invalid byte 0x{head[exc.start]:02x} on line {line}, at byte offset "
                f"{exc.start} of the file); re-save it with UTF-8 encoding",
                param=param,
            ) from None
        text = head[: exc.start].decode("utf-8")
    first = text.lstrip("\ufeff \t\r\n")[:1]
    if first != "{":
        raise Unprocessable(
            f"line 1 must be a JSON object starting with '{{', found {first!r}: upload one JSON object per line",
            param=param,
        )


def dataset_key(client_code: str, file_id: str, filename: str) -> str:
    return f"{names.DATASETS_PREFIX}{client_code}/{file_id}/{safe_filename(filename)}"


def register_stream(
    store: Store,
    blobs: Blobs,
    settings: Settings,
    client_code: str,
    filename: str,
    stream: IO[bytes],
    size: int,
    purpose: str,
    source: str,
) -> Dataset:
    """Store an uploaded file in S3 (and the DFS mirror) and record it as `uploaded`; the S3 event validates it."""
    check_purpose(purpose)
    filename = clean_filename(filename)
    check_filename(filename)
    head = stream.read(SNIFF_BYTES)
    stream.seek(0)
    sniff(head)
    file_id = ids.new_id("file-")
    key = dataset_key(client_code, file_id, filename)
    dfs_path = _mirror(settings, client_code, file_id, filename, stream)
    dataset = Dataset(
        id=file_id,
        client_code=client_code,
        filename=filename,
        purpose=purpose,
        bucket=settings.aws_bucket_name,
        s3_key=key,
        bytes=size,
        dfs_path=dfs_path,
        source=source,
    )
    # The record goes first so the ingest worker always finds it when the ObjectCreated event arrives.
    store.datasets.insert(dataset)
    try:
        blobs.put_stream(dataset.bucket, key, stream)
    except Exception:
        store.datasets.delete(file_id, client_code)
        if dfs_path:
            shutil.rmtree(Path(dfs_path).parent, ignore_errors=True)
        raise
    return dataset


def _mirror(settings: Settings, client_code: str, file_id: str, filename: str, stream: IO[bytes]) -> str | None:
    if not settings.dfs_base_path:
        return None
    path = Path(settings.dfs_base_path) / client_code / file_id / safe_filename(filename)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        shutil.copyfileobj(stream, out, 1024 * 1024)
    stream.seek(0)
    return str(path)


def get_dataset(store: Store, client_code: str, file_id: str) -> Dataset:
    dataset = store.datasets.get(file_id, client_code)
    if dataset is None:
        raise NotFound(f"file {file_id!r} not found", param="file_id")
    return dataset


def list_files(
    store: Store, client_code: str, purpose: str | None, after: str | None, limit: int, order: str
) -> Page[Dataset]:
    return store.datasets.page(client_code, purpose, after, limit, order)


def content(store: Store, blobs: Blobs, client_code: str, file_id: str) -> tuple[Iterator[bytes], str]:
    """The file's bytes as stored (streamed from S3, never held whole) and a safe name to download it as."""
    dataset = get_dataset(store, client_code, file_id)
    return blobs.iter_chunks(dataset.bucket, dataset.s3_key), safe_filename(dataset.filename)


def delete_dataset(store: Store, blobs: Blobs, client_code: str, file_id: str) -> Dataset:
    dataset = get_dataset(store, client_code, file_id)
    blobs.delete(dataset.bucket, dataset.s3_key)
    if dataset.dfs_path:
        shutil.rmtree(Path(dataset.dfs_path).parent, ignore_errors=True)
    store.datasets.delete(file_id, client_code)
    return dataset


def openai_status(status: DatasetStatus) -> str:
    if status == DatasetStatus.validated:
        return "processed"
    if status == DatasetStatus.invalid:
        return "error"
    return "uploaded"


def resolve_reference(
    store: Store, blobs: Blobs, settings: Settings, client_code: str, ref: str, param: str = "dataset_filename"
) -> Dataset:
    """Seed 001's `dataset_filename`: a dataset id, an S3 key or s3:// URI, or a path under DFS_BASE_PATH.

    A file under the tenant's DFS folder that was never registered is registered now (uploaded to S3, validated
    by the ingest worker like any upload). Anything outside the tenant's own prefixes is not found.
    """
    dataset = store.datasets.get(ref, client_code)
    if dataset is not None:
        return dataset
    bucket, key = settings.aws_bucket_name, ref
    if ref.startswith("s3://"):
        bucket, _, key = ref.removeprefix("s3://").partition("/")
    owned = tuple(f"{p}{client_code}/" for p in names.INGEST_PREFIXES)
    if key.startswith(owned):
        dataset = store.datasets.by_key(bucket, key)
        if dataset is not None and dataset.client_code == client_code:
            return dataset
    if settings.dfs_base_path and not ref.startswith("s3://"):
        found = _from_dfs(store, blobs, settings, client_code, ref)
        if found is not None:
            return found
    raise InvalidRequest(f"{param} {ref!r} names none of your datasets (id, S3 key or DFS path)", param=param)


def _from_dfs(store: Store, blobs: Blobs, settings: Settings, client_code: str, ref: str) -> Dataset | None:
    root = (Path(settings.dfs_base_path or "") / client_code).resolve()
    path = Path(ref) if os.path.isabs(ref) else Path(settings.dfs_base_path or "") / ref
    path = path.resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None  # outside the tenant's folder (or a traversal attempt): not found, like any other miss
    existing = store.datasets.by_dfs_path(client_code, str(path))
    if existing is not None:
        return existing
    with open(path, "rb") as stream:
        dataset = register_stream(
            store,
            blobs,
            settings.model_copy(update={"dfs_base_path": None}),
            client_code,
            display_filename(path.name),
            stream,
            path.stat().st_size,
            "fine-tune",
            "dfs",
        )
    store.datasets.set_dfs_path(dataset.id, str(path))
    return dataset
