"""What a restarted platform re-derives from its documents when the queues' contents were lost with it: files
acknowledged but never validated, and drops whose S3 event never arrived, are announced again through S3's own
event (functions/local/restore.py), and the real ingest worker validates them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
from fastapi.testclient import TestClient

from functions.core import names
from functions.core.settings import get_settings
from functions.local import restore
from functions.local.resources import LocalResources
from functions.store.mongo import get_store
from tests.conftest import _empty
from tests.helpers.datasets import chat_lines

Headers = dict[str, str]


def test_unvalidated_files_and_lost_drops_are_validated_after_a_restart(
    client: TestClient,
    make_tenant: Callable[..., Headers],
    ingest: Callable[[], int],
    s3: Any,
    resources: LocalResources,
) -> None:
    restorer = make_tenant("restorer")
    bucket = get_settings().aws_bucket_name
    # Given a file acknowledged by the API and a file dropped into S3, whose events died with the platform
    uploaded = client.post("/v1/files", headers=restorer, data={"purpose": "fine-tune"},
                           files={"file": ("chats.jsonl", chat_lines(12))})  # fmt: skip
    assert uploaded.status_code == 200, uploaded.text
    s3.put_object(Bucket=bucket, Key="incoming/restorer/dropped.jsonl", Body=chat_lines(12))
    sqs = boto3.client("sqs", endpoint_url=get_settings().aws_endpoint_url)
    _empty(sqs, resources.url(names.INGEST_QUEUE))
    assert client.get(f"/v1/files/{uploaded.json()['id']}", headers=restorer).json()["status"] == "uploaded"

    # When the restarted platform re-derives its work
    announced = [k for k in restore.revalidate(s3, get_store(), get_settings()) if "/restorer/" in k]  # shared bucket
    assert sorted(announced) == sorted([f"datasets/restorer/{uploaded.json()['id']}/chats.jsonl",
                                        "incoming/restorer/dropped.jsonl"])  # fmt: skip
    ingest()

    # Then both are validated, once each, and a second pass announces nothing
    files = client.get("/v1/files", headers=restorer).json()["data"]
    assert sorted((f["filename"], f["status"]) for f in files) == [("chats.jsonl", "processed"),
                                                                  ("dropped.jsonl", "processed")]  # fmt: skip
    assert not [k for k in restore.revalidate(s3, get_store(), get_settings()) if "/restorer/" in k]
