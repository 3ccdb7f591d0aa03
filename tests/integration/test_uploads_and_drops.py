"""The two other ways in: OpenAI Uploads (parts, or a presigned POST straight to S3) and files dropped into
`incoming/{client_code}/`. Both end as one S3 object whose event the ingest worker validates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi.testclient import TestClient

from functions.core.settings import get_settings
from tests.helpers.datasets import chat_lines
from tests.helpers.openai_schema import assert_openai

Headers = dict[str, str]


def create_upload(client: TestClient, headers: Headers, size: int, **overrides: Any) -> Any:
    body = {"filename": "big.jsonl", "purpose": "fine-tune", "bytes": size, "mime_type": "application/jsonl"}
    return client.post("/v1/uploads", headers=headers, json={**body, **overrides})


def test_upload_in_parts_completes_to_a_validated_file(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int], s3: Any
) -> None:
    acme = make_tenant("acme")
    data = chat_lines(30)
    half = len(data) // 2
    upload = create_upload(client, acme, len(data))
    assert upload.status_code == 200, upload.text
    assert_openai("Upload", upload.json())
    upload_id = upload.json()["id"]
    part_ids = []
    for chunk in (data[:half], data[half:]):
        part = client.post(f"/v1/uploads/{upload_id}/parts", headers=acme, files={"data": ("blob", chunk)})
        assert part.status_code == 200, part.text
        assert_openai("UploadPart", part.json())
        part_ids.append(part.json()["id"])
    done = client.post(f"/v1/uploads/{upload_id}/complete", headers=acme, json={"part_ids": part_ids})
    assert done.status_code == 200, done.text
    assert_openai("Upload", done.json())
    assert done.json()["status"] == "completed" and done.json()["file"]["bytes"] == len(data)
    ingest()
    file_id = done.json()["file"]["id"]
    assert client.get(f"/v1/files/{file_id}", headers=acme).json()["status"] == "processed"
    assert client.get(f"/v1/files/{file_id}/content", headers=acme).content == data
    leftovers = s3.list_objects_v2(Bucket=get_settings().aws_bucket_name, Prefix=f"uploads/acme/{upload_id}/parts/")
    assert leftovers.get("KeyCount", 0) == 0


def test_parts_must_add_up_to_the_declared_size(client: TestClient, make_tenant: Callable[..., Headers]) -> None:
    acme = make_tenant("acme")
    data = chat_lines(10)
    upload_id = create_upload(client, acme, len(data) + 5).json()["id"]
    part = client.post(f"/v1/uploads/{upload_id}/parts", headers=acme, files={"data": ("b", data)}).json()
    wrong = client.post(f"/v1/uploads/{upload_id}/complete", headers=acme, json={"part_ids": [part["id"]]})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "part_ids"
    unknown = client.post(f"/v1/uploads/{upload_id}/complete", headers=acme, json={"part_ids": ["part_nope"]})
    assert unknown.status_code == 400
    too_much = client.post(f"/v1/uploads/{upload_id}/parts", headers=acme, files={"data": ("b", data)})
    assert too_much.status_code == 400 and too_much.json()["error"]["param"] == "data"


def test_presigned_post_goes_straight_to_s3_and_the_event_registers_it(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    data = chat_lines(15)
    upload = create_upload(client, acme, len(data)).json()
    post = upload["presigned_post"]
    assert post["key"] == f"uploads/acme/{upload['id']}/data" and post["max_bytes"] == len(data)
    # S3 enforces the policy (moto does not): assert its conditions say what S3 would enforce.
    import base64
    import json

    policy = json.loads(base64.b64decode(post["fields"]["policy"]))
    assert ["content-length-range", 1, len(data)] in policy["conditions"]
    assert {"key": post["key"]} in policy["conditions"]
    sent = httpx.post(post["url"], data=post["fields"], files={"file": ("big.jsonl", data)})
    assert sent.status_code in (200, 204), sent.text
    ingest()  # the ObjectCreated:Post event registers and validates it, before anyone calls complete
    fetched = client.get(f"/v1/uploads/{upload['id']}", headers=acme).json()
    assert fetched["status"] == "completed" and fetched["file"]["status"] == "processed"
    completed = client.post(f"/v1/uploads/{upload['id']}/complete", headers=acme, json={})
    assert completed.status_code == 200 and completed.json()["file"]["id"] == fetched["file"]["id"]
    listed = client.get("/v1/files", headers=acme).json()["data"]
    assert [f["id"] for f in listed] == [fetched["file"]["id"]]  # registered exactly once


def test_presigned_object_larger_than_declared_is_marked_invalid_not_lost(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    data = chat_lines(15)
    upload = create_upload(client, acme, 100).json()
    post = upload["presigned_post"]
    httpx.post(post["url"], data=post["fields"], files={"file": ("big.jsonl", data)})
    ingest()
    file = client.get(f"/v1/uploads/{upload['id']}", headers=acme).json()["file"]
    assert file["status"] == "error" and "declared 100 bytes" in file["status_details"]


def test_cancel_and_expired_or_bad_uploads(client: TestClient, make_tenant: Callable[..., Headers]) -> None:
    acme = make_tenant("acme")
    upload_id = create_upload(client, acme, 100).json()["id"]
    cancelled = client.post(f"/v1/uploads/{upload_id}/cancel", headers=acme)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert_openai("Upload", cancelled.json())
    again = client.post(f"/v1/uploads/{upload_id}/cancel", headers=acme)
    assert again.status_code == 400
    assert create_upload(client, acme, 100, purpose="vision").json()["error"]["param"] == "purpose"
    assert create_upload(client, acme, 100, mime_type="image/png").status_code == 415
    assert create_upload(client, acme, 100, filename="x.csv").status_code == 415
    assert create_upload(client, acme, 10**13).status_code == 413
    assert create_upload(client, acme, 0).json()["error"]["param"] == "bytes"


def test_file_dropped_into_incoming_registers_and_validates(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int], s3: Any
) -> None:
    acme = make_tenant("acme")
    key = "incoming/acme/my chats été+v2.jsonl"  # spaces, '+', non-ASCII: the event encodes them all
    s3.put_object(Bucket=get_settings().aws_bucket_name, Key=key, Body=chat_lines(12))
    ingest()
    files = client.get("/v1/files", headers=acme).json()["data"]
    assert len(files) == 1
    assert files[0]["filename"] == "my chats été+v2.jsonl" and files[0]["status"] == "processed"


def test_drop_for_unknown_tenant_is_left_alone_and_not_retried(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int], s3: Any, resources: Any
) -> None:
    make_tenant("acme")
    bucket = get_settings().aws_bucket_name
    s3.put_object(Bucket=bucket, Key="incoming/ghost/data.jsonl", Body=chat_lines(12))
    assert ingest() == 1
    assert s3.head_object(Bucket=bucket, Key="incoming/ghost/data.jsonl")["ContentLength"] > 0
    import boto3

    sqs = boto3.client("sqs", endpoint_url=get_settings().aws_endpoint_url)
    attrs = sqs.get_queue_attributes(QueueUrl=resources.dlq_urls["ministudio-ingest"], AttributeNames=["All"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"
