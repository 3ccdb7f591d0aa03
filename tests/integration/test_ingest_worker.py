"""The ingest Lambda handler, invoked with real-shaped events (events/) and through the SQS event source."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from functions.core import names
from functions.core.settings import get_settings
from functions.local.lambda_context import new_context
from functions.local.sqs_poller import SqsPoller
from functions.store.mongo import get_store
from functions.workers import ingest as worker
from tests.helpers.datasets import chat_lines

EVENTS = Path(__file__).resolve().parents[2] / "events"
Headers = dict[str, str]


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def context() -> Any:
    return new_context("ministudio-ingest-worker", names.WORKER_TIMEOUT_SECONDS[names.INGEST_QUEUE])


def test_s3_test_event_is_acknowledged(env: Any) -> None:
    assert worker.handler(load_event("sqs_s3_test_event.json"), context()) == {"batchItemFailures": []}


def test_sample_incoming_event_with_url_encoded_key_registers_the_object(
    make_tenant: Callable[..., Headers], s3: Any, client: TestClient
) -> None:
    # events/sqs_s3_incoming_put.json names "incoming/acme/my chats été.jsonl", quote_plus-encoded as S3 sends it.
    acme = make_tenant("acme")
    s3.put_object(Bucket=get_settings().aws_bucket_name, Key="incoming/acme/my chats été.jsonl", Body=chat_lines())
    result = worker.handler(load_event("sqs_s3_incoming_put.json"), context())
    assert result == {"batchItemFailures": []}
    files = client.get("/v1/files", headers=acme).json()["data"]
    assert [f["filename"] for f in files] == ["my chats été.jsonl"] and files[0]["status"] == "processed"


def test_bad_record_fails_alone_in_a_partial_batch_response(make_tenant: Callable[..., Headers], s3: Any) -> None:
    make_tenant("acme")
    s3.put_object(Bucket=get_settings().aws_bucket_name, Key="incoming/acme/my chats été.jsonl", Body=chat_lines())
    good = load_event("sqs_s3_incoming_put.json")["Records"][0]
    poison = {**good, "messageId": "poison-1", "body": "this is not JSON"}
    result = worker.handler({"Records": [good, poison]}, context())
    assert result == {"batchItemFailures": [{"itemIdentifier": "poison-1"}]}


def test_duplicate_delivery_registers_and_validates_once(make_tenant: Callable[..., Headers], s3: Any) -> None:
    make_tenant("acme")
    s3.put_object(Bucket=get_settings().aws_bucket_name, Key="incoming/acme/my chats été.jsonl", Body=chat_lines())
    event = load_event("sqs_s3_incoming_put.json")
    worker.handler(event, context())
    first = get_store().datasets.col.find_one({})
    worker.handler(event, context())
    docs = list(get_store().datasets.col.find({}))
    assert len(docs) == 1 and docs[0]["validated_at"] == first["validated_at"]


@pytest.mark.parametrize(
    ("name", "data", "line", "words"),
    [
        ("bad-utf8", chat_lines(12) + b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}\n', 13, "UTF-8"),
        ("truncated", chat_lines(12) + b'{"messages": [{"role": "user"', 13, "JSON"),
        ("wrong-role", chat_lines(12).replace(b'"system"', b'"robot"', 1), 1, "robot"),
        ("too-few", chat_lines(3), None, "at least 10"),
        ("blank", b"\n\n", None, "blank lines"),
        ("binary", chat_lines(12) + b"\x00\x01\x02PK\x03\x04\n", 13, ""),
    ],
)
def test_bad_datasets_end_invalid_with_line_and_reason(
    make_tenant: Callable[..., Headers],
    client: TestClient,
    s3: Any,
    ingest: Callable[[], int],
    name: str,
    data: bytes,
    line: int | None,
    words: str,
) -> None:
    acme = make_tenant("acme")
    s3.put_object(Bucket=get_settings().aws_bucket_name, Key=f"incoming/acme/{name}.jsonl", Body=data)
    ingest()
    file = client.get("/v1/files", headers=acme).json()["data"][0]
    assert file["status"] == "error", file
    first = file["validation"]["errors"][0]
    assert first["line"] == line and words in first["reason"]


def test_a_100_mb_single_line_is_invalid_and_the_worker_survives(
    make_tenant: Callable[..., Headers], client: TestClient, s3: Any, ingest: Callable[[], int], env: Any
) -> None:
    acme = make_tenant("acme")
    bucket = get_settings().aws_bucket_name
    # Multipart upload of one 100 MB line: 20 parts of 5 MB, never one 100 MB bytes object in this process.
    key = "incoming/acme/one-line.jsonl"
    mpu = s3.create_multipart_upload(Bucket=bucket, Key=key)
    chunk = b"x" * (5 * 1024 * 1024)
    parts = []
    for n in range(1, 21):
        body = (b'{"messages": "' + chunk[14:]) if n == 1 else chunk
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=mpu["UploadId"], PartNumber=n, Body=body)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=mpu["UploadId"], MultipartUpload={"Parts": parts})
    ingest()
    file = client.get("/v1/files", headers=acme).json()["data"][0]
    assert file["status"] == "error"
    line_errors = [e for e in file["validation"]["errors"] if e["line"] == 1]
    assert line_errors and "limit" in line_errors[0]["reason"], file["validation"]["errors"]


def test_poison_message_lands_in_the_dlq_after_five_receives(resources: Any, env: Any) -> None:
    sqs = boto3.client("sqs", endpoint_url=get_settings().aws_endpoint_url)
    queue = resources.url(names.INGEST_QUEUE)
    sqs.send_message(QueueUrl=queue, MessageBody='{"Records": [{"eventName": "ObjectCreated:Put"}]}')
    poller = SqsPoller(sqs, queue, worker.handler, wait_seconds=0)
    deadline = time.monotonic() + 30
    dlq = resources.dlq_urls[names.INGEST_QUEUE]
    while time.monotonic() < deadline:
        poller.run_once()
        moved = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=1, WaitTimeSeconds=0).get("Messages", [])
        if moved:
            assert "ObjectCreated" in moved[0]["Body"]
            return
        time.sleep(0.5)
    raise AssertionError("the poison message never reached the DLQ")
