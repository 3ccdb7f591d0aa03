"""Completing an OpenAI Upload is S3 metadata work: the parts become one multipart upload, parts of 5 MiB or more
copied inside S3 (UploadPartCopy), so API Gateway's 29 s never meets a 5 GiB upload. Small parts are joined through
the API only within a bound; md5 is checked; cancel and failures leave no multipart upload open."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.core.settings import get_settings
from functions.store.blobs import MIN_PART, get_blobs
from tests.helpers.datasets import chat_lines

Headers = dict[str, str]


def padded_lines(first: int, total_bytes: int) -> bytes:
    """Whole JSONL chat lines, about `total_bytes` of them (a 5 MiB part of chat_lines would be 30,000 lines)."""
    rows = []
    size = 0
    i = first
    while size < total_bytes:
        row = json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"Repeat {i}: " + "lorem ipsum " * 80},
                    {"role": "assistant", "content": f"{i} " + "lorem ipsum " * 80},
                ]
            }
        )
        rows.append(row + "\n")
        size += len(row) + 1
        i += 1
    return "".join(rows).encode()


def start_upload(client: TestClient, headers: Headers, size: int) -> str:
    body = {"filename": "big.jsonl", "purpose": "fine-tune", "bytes": size, "mime_type": "application/jsonl"}
    created = client.post("/v1/uploads", headers=headers, json=body)
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


def add_part(client: TestClient, headers: Headers, upload_id: str, chunk: bytes) -> str:
    part = client.post(f"/v1/uploads/{upload_id}/parts", headers=headers, files={"data": ("blob", chunk)})
    assert part.status_code == 200, part.text
    return str(part.json()["id"])


def open_multipart_uploads(s3: Any, upload_id: str) -> list[Any]:
    listed = s3.list_multipart_uploads(Bucket=get_settings().aws_bucket_name, Prefix=f"uploads/acme/{upload_id}/")
    return list(listed.get("Uploads", []))


@pytest.fixture
def s3_calls(env: Callable[..., Any]) -> Iterator[Counter[str]]:
    """Every S3 operation the API process sends from now on, by name (GetObject would mean bytes read here)."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    events = get_blobs().client.meta.events
    events.register("before-call.s3", count)
    yield calls
    events.unregister("before-call.s3", count)


def test_completion_copies_big_parts_inside_s3_in_part_ids_order(
    client: TestClient,
    make_tenant: Callable[..., Headers],
    ingest: Callable[[], int],
    s3: Any,
    s3_calls: Counter[str],
) -> None:
    # Given three parts, the first two of S3's 5 MiB minimum, sent out of order.
    acme = make_tenant("acme")
    chunks = [padded_lines(0, MIN_PART), padded_lines(10_000, MIN_PART), padded_lines(20_000, 4096)]
    data = b"".join(chunks)
    upload_id = start_upload(client, acme, len(data))
    sent = {index: add_part(client, acme, upload_id, chunks[index]) for index in (1, 2, 0)}
    s3_calls.clear()

    # When it completes with part_ids in the file's order.
    in_order = [sent[0], sent[1], sent[2]]
    done = client.post(f"/v1/uploads/{upload_id}/complete", headers=acme, json={"part_ids": in_order})

    # Then S3 joined them: no byte was read or sent by the API, and the object is the parts in part_ids order.
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed" and done.json()["file"]["bytes"] == len(data)
    assert s3_calls["GetObject"] == 0 and s3_calls["UploadPart"] == 0
    assert s3_calls["UploadPartCopy"] == 3 and s3_calls["CompleteMultipartUpload"] == 1
    bucket = get_settings().aws_bucket_name
    stored = s3.get_object(Bucket=bucket, Key=f"uploads/acme/{upload_id}/data")
    assert stored["Body"].read() == data and stored["ContentType"] == "application/jsonl"
    assert open_multipart_uploads(s3, upload_id) == []
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"uploads/acme/{upload_id}/parts/").get("KeyCount", 0) == 0
    # And the ObjectCreated:CompleteMultipartUpload event reaches the ingest worker as a PUT's would.
    ingest()
    file_id = done.json()["file"]["id"]
    assert client.get(f"/v1/files/{file_id}", headers=acme).json()["status"] == "processed"


def test_openai_sdk_chunked_upload_of_5_mib_parts_is_joined_inside_s3(
    client: TestClient, make_tenant: Callable[..., Headers], s3: Any, s3_calls: Counter[str], tmp_path: Path
) -> None:
    from openai import OpenAI

    key = make_tenant("acme")["Authorization"].removeprefix("Bearer ")
    sdk = OpenAI(api_key=key, base_url="http://testserver/v1", http_client=client, max_retries=0)
    path = tmp_path / "big.jsonl"
    path.write_bytes(padded_lines(0, 2 * MIN_PART + 1000))
    s3_calls.clear()
    upload = sdk.uploads.upload_file_chunked(
        file=path, mime_type="application/jsonl", purpose="fine-tune", part_size=MIN_PART
    )
    assert upload.status == "completed" and upload.file is not None and upload.file.bytes == path.stat().st_size
    assert s3_calls["GetObject"] == 0 and s3_calls["UploadPartCopy"] == 3
    stored = s3.get_object(Bucket=get_settings().aws_bucket_name, Key=f"uploads/acme/{upload.id}/data")
    assert stored["Body"].read() == path.read_bytes()


def test_small_parts_of_a_small_upload_are_joined_in_part_ids_order(
    client: TestClient, make_tenant: Callable[..., Headers], s3: Any
) -> None:
    acme = make_tenant("acme")
    chunks = [chat_lines(5, offset=0), chat_lines(5, offset=5), chat_lines(5, offset=10)]
    upload_id = start_upload(client, acme, sum(map(len, chunks)))
    ids = [add_part(client, acme, upload_id, chunk) for chunk in chunks]
    done = client.post(f"/v1/uploads/{upload_id}/complete", headers=acme, json={"part_ids": [ids[2], ids[0], ids[1]]})
    assert done.status_code == 200, done.text
    stored = s3.get_object(Bucket=get_settings().aws_bucket_name, Key=f"uploads/acme/{upload_id}/data")
    assert stored["Body"].read() == chunks[2] + chunks[0] + chunks[1]


def test_small_parts_beyond_the_read_through_bound_are_refused(
    client: TestClient, env: Callable[..., Any], make_tenant: Callable[..., Headers], s3: Any
) -> None:
    env(UPLOAD_READ_THROUGH_MAX_BYTES="1500")
    acme = make_tenant("acme")
    chunks = [chat_lines(6, offset=0), chat_lines(6, offset=6), chat_lines(6, offset=12)]  # ~1 kB each
    upload_id = start_upload(client, acme, sum(map(len, chunks)))
    first, second = add_part(client, acme, upload_id, chunks[0]), add_part(client, acme, upload_id, chunks[1])
    # A third small part could never be joined within the bound, whatever the order: refused on arrival.
    third = client.post(f"/v1/uploads/{upload_id}/parts", headers=acme, files={"data": ("b", chunks[2])})
    assert third.status_code == 400 and third.json()["error"]["param"] == "data"
    assert "5242880" in third.json()["error"]["message"]
    # Two small parts fit on arrival, but joining them reads both (over 1,500 bytes): refused at completion.
    upload_id = start_upload(client, acme, len(chunks[0]) + len(chunks[1]))
    first, second = add_part(client, acme, upload_id, chunks[0]), add_part(client, acme, upload_id, chunks[1])
    refused = client.post(f"/v1/uploads/{upload_id}/complete", headers=acme, json={"part_ids": [first, second]})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "part_ids"
    assert client.get(f"/v1/uploads/{upload_id}", headers=acme).json()["status"] == "pending"
    assert open_multipart_uploads(s3, upload_id) == []


def test_md5_is_checked_before_anything_is_written(
    client: TestClient, make_tenant: Callable[..., Headers], s3: Any
) -> None:
    acme = make_tenant("acme")
    data = chat_lines(12)
    upload_id = start_upload(client, acme, len(data))
    ids = [add_part(client, acme, upload_id, data[:700]), add_part(client, acme, upload_id, data[700:])]
    wrong = client.post(
        f"/v1/uploads/{upload_id}/complete", headers=acme, json={"part_ids": ids, "md5": hashlib.md5(b"x").hexdigest()}
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "md5"
    bucket = get_settings().aws_bucket_name
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"uploads/acme/{upload_id}/data").get("KeyCount", 0) == 0
    assert open_multipart_uploads(s3, upload_id) == []
    garbled = client.post(f"/v1/uploads/{upload_id}/complete", headers=acme, json={"part_ids": ids, "md5": "nope"})
    assert garbled.status_code == 400 and garbled.json()["error"]["param"] == "md5"
    # The same digest in base64 (HTTP's Content-MD5 spelling) is accepted as well as hex.
    right = base64.b64encode(hashlib.md5(data).digest()).decode()
    done = client.post(f"/v1/uploads/{upload_id}/complete", headers=acme, json={"part_ids": ids, "md5": right})
    assert done.status_code == 200, done.text
    assert s3.get_object(Bucket=bucket, Key=f"uploads/acme/{upload_id}/data")["Body"].read() == data


def test_md5_of_an_upload_too_big_to_read_is_recorded_on_the_object(
    client: TestClient, env: Callable[..., Any], make_tenant: Callable[..., Headers], s3: Any
) -> None:
    env(UPLOAD_READ_THROUGH_MAX_BYTES="100")
    acme = make_tenant("acme")
    data = chat_lines(12)
    upload_id = start_upload(client, acme, len(data))
    part = add_part(client, acme, upload_id, data)
    digest = hashlib.md5(data).hexdigest()
    done = client.post(f"/v1/uploads/{upload_id}/complete", headers=acme, json={"part_ids": [part], "md5": digest})
    assert done.status_code == 200, done.text
    head = s3.head_object(Bucket=get_settings().aws_bucket_name, Key=f"uploads/acme/{upload_id}/data")
    assert head["Metadata"] == {"md5": digest}


def test_cancel_aborts_a_completion_cut_off_mid_way(
    client: TestClient, make_tenant: Callable[..., Headers], s3: Any
) -> None:
    acme = make_tenant("acme")
    data = chat_lines(12)
    upload_id = start_upload(client, acme, len(data))
    add_part(client, acme, upload_id, data)
    # Given a completion that died (a Lambda timeout) after S3 had started its multipart upload.
    bucket, key = get_settings().aws_bucket_name, f"uploads/acme/{upload_id}/data"
    started = s3.create_multipart_upload(Bucket=bucket, Key=key)
    s3.upload_part(Bucket=bucket, Key=key, UploadId=started["UploadId"], PartNumber=1, Body=data)
    assert len(open_multipart_uploads(s3, upload_id)) == 1
    cancelled = client.post(f"/v1/uploads/{upload_id}/cancel", headers=acme)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert open_multipart_uploads(s3, upload_id) == []
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"uploads/acme/{upload_id}/").get("KeyCount", 0) == 0


def test_a_failed_completion_aborts_its_multipart_upload_and_stays_pending(
    client: TestClient, make_tenant: Callable[..., Headers], s3: Any
) -> None:
    acme = make_tenant("acme")
    data = chat_lines(12)
    upload_id = start_upload(client, acme, len(data))
    ids = [add_part(client, acme, upload_id, data[:600]), add_part(client, acme, upload_id, data[600:])]
    bucket = get_settings().aws_bucket_name
    s3.delete_object(Bucket=bucket, Key=f"uploads/acme/{upload_id}/parts/{ids[1]}")  # lost behind the API's back
    failed = client.post(f"/v1/uploads/{upload_id}/complete", headers=acme, json={"part_ids": ids})
    assert failed.status_code >= 500
    assert client.get(f"/v1/uploads/{upload_id}", headers=acme).json()["status"] == "pending"
    assert open_multipart_uploads(s3, upload_id) == []
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"uploads/acme/{upload_id}/data").get("KeyCount", 0) == 0
