"""Issue #18 on files: every way a file name comes in is stored and shown without directories or invisible
controls; upload refusals name the line; a body that is not JSON is reported by position, not as a field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from functions.core.models import Dataset
from functions.core.settings import get_settings
from functions.store.mongo import get_store
from tests.helpers.datasets import chat_lines
from tests.helpers.openai_schema import assert_openai

Headers = dict[str, str]
SNEAKY = "../../etc/in\u202elnosj\u200e\x1b.jsonl"  # a path, an RLO, an LRM and an escape character
SHOWN = "inlnosj.jsonl"


def post_file(client: TestClient, headers: Headers, name: str, data: bytes | None = None) -> Any:
    files = {"file": (name, data if data is not None else chat_lines(12))}
    return client.post("/v1/files", headers=headers, data={"purpose": "fine-tune"}, files=files)


def shown_everywhere(client: TestClient, headers: Headers, file_id: str) -> set[str]:
    listed = {f["filename"] for f in client.get("/v1/files", headers=headers).json()["data"] if f["id"] == file_id}
    retrieved = client.get(f"/v1/files/{file_id}", headers=headers).json()
    stored = get_store().datasets.get(file_id)
    assert stored is not None
    return listed | {retrieved["filename"], stored.filename}


def test_file_names_are_stored_and_shown_without_paths_or_controls(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    created = post_file(client, acme, SNEAKY)
    assert created.status_code == 200, created.text
    assert created.json()["filename"] == SHOWN
    file_id = created.json()["id"]
    assert get_store().datasets.get(file_id).s3_key.endswith(f"/{file_id}/{SHOWN}")  # type: ignore[union-attr]
    ingest()
    assert shown_everywhere(client, acme, file_id) == {SHOWN}
    report = client.get(f"/v1/files/{file_id}", headers=acme).json()
    assert report["status"] == "processed"
    assert_openai("OpenAIFile", report)

    windows = post_file(client, acme, "C:\\Users\\me\\y.jsonl")
    assert windows.json()["filename"] == "y.jsonl"


def test_a_name_with_nothing_left_is_a_400_naming_filename(
    client: TestClient, make_tenant: Callable[..., Headers]
) -> None:
    acme = make_tenant("acme")
    for name in ("dir/", "\u202e\u2066"):
        refused = post_file(client, acme, name)
        assert refused.status_code == 400, (name, refused.text)
        assert refused.json()["error"]["param"] == "filename"
    upload = client.post(
        "/v1/uploads",
        headers=acme,
        json={"filename": "a/..", "purpose": "fine-tune", "bytes": 10, "mime_type": "application/jsonl"},
    )
    assert upload.status_code == 400 and upload.json()["error"]["param"] == "filename"
    seed = client.post("/fine_tuning/upload-dataset/acme", headers=acme, files={"file": ("\x1b\u202e", b"{}")})
    assert seed.status_code == 400 and seed.json()["ok"] is False and "filename" in seed.json()["error"]
    assert client.get("/v1/files", headers=acme).json()["data"] == []


def test_uploads_api_cleans_the_name_of_the_upload_and_of_its_file(
    client: TestClient, make_tenant: Callable[..., Headers]
) -> None:
    acme = make_tenant("acme")
    data = chat_lines(12)
    body = {"filename": SNEAKY, "purpose": "fine-tune", "bytes": len(data), "mime_type": "application/jsonl"}
    upload = client.post("/v1/uploads", headers=acme, json=body)
    assert upload.status_code == 200, upload.text
    assert upload.json()["filename"] == SHOWN
    upload_id = upload.json()["id"]
    part = client.post(f"/v1/uploads/{upload_id}/parts", headers=acme, files={"data": ("blob", data)}).json()
    done = client.post(f"/v1/uploads/{upload_id}/complete", headers=acme, json={"part_ids": [part["id"]]}).json()
    assert done["filename"] == SHOWN and done["file"]["filename"] == SHOWN
    assert client.get(f"/v1/uploads/{upload_id}", headers=acme).json()["filename"] == SHOWN
    assert shown_everywhere(client, acme, done["file"]["id"]) == {SHOWN}


def test_seed_upload_route_cleans_the_name(client: TestClient, make_tenant: Callable[..., Headers]) -> None:
    acme = make_tenant("acme")
    response = client.post("/fine_tuning/upload-dataset/acme", headers=acme, files={"file": (SNEAKY, chat_lines(12))})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["dataset_s3"].endswith(f"/{SHOWN}")
    assert shown_everywhere(client, acme, body["dataset_id"]) == {SHOWN}


def test_dropped_files_are_named_by_their_last_part_or_the_fallback(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int], s3: Any
) -> None:
    acme = make_tenant("acme")
    bucket = get_settings().aws_bucket_name
    s3.put_object(Bucket=bucket, Key="incoming/acme/sub/C:\\x\\\u202ey.jsonl", Body=chat_lines(12))
    s3.put_object(Bucket=bucket, Key="incoming/acme/\u2066\u2069", Body=chat_lines(12, offset=50))
    ingest()
    files = client.get("/v1/files", headers=acme).json()["data"]
    assert sorted(f["filename"] for f in files) == ["dataset.jsonl", "y.jsonl"]
    for f in files:
        assert shown_everywhere(client, acme, f["id"]) == {f["filename"]}


def test_records_stored_before_the_fix_are_shown_clean(client: TestClient, make_tenant: Callable[..., Headers]) -> None:
    acme = make_tenant("acme")
    bucket = get_settings().aws_bucket_name
    get_store().datasets.insert(
        Dataset(
            id="file-legacy",
            client_code="acme",
            filename=SNEAKY,
            bucket=bucket,
            s3_key="datasets/acme/x",
            bytes=1,
            source="api",
        )
    )
    assert client.get("/v1/files/file-legacy", headers=acme).json()["filename"] == SHOWN
    assert [f["filename"] for f in client.get("/v1/files", headers=acme).json()["data"]] == [SHOWN]


def test_non_utf8_upload_is_refused_with_its_line(client: TestClient, make_tenant: Callable[..., Headers]) -> None:
    acme = make_tenant("acme")
    lines = chat_lines(20).splitlines(keepends=True)
    lines[12] = lines[12].replace(b"calculator", b"calcul\xe9tor")
    refused = post_file(client, acme, "t.jsonl", b"".join(lines))
    assert refused.status_code == 415
    offset = len(b"".join(lines[:12])) + lines[12].index(b"\xe9")
    assert f"on line 13, at byte offset {offset}" in refused.json()["error"]["message"]


def test_body_that_is_not_json_is_reported_by_position_on_v1(
    client: TestClient, make_tenant: Callable[..., Headers]
) -> None:
    acme = make_tenant("acme")
    body = b'{\n  "filename": "a.jsonl",\n  "purpose": "fine-tune",\n  "bytes": 1,'
    response = client.post("/v1/uploads", headers={**acme, "Content-Type": "application/json"}, content=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] is None and error["type"] == "invalid_request_error"
    assert error["message"] == (
        "the request body is not valid JSON: Expecting property name enclosed in double quotes "
        f"at line 4 column 14 (char {len(body)})"
    )
    assert_openai("ErrorResponse", response.json())


def test_body_that_is_not_json_keeps_the_seed_error_shape(
    client: TestClient, make_tenant: Callable[..., Headers]
) -> None:
    acme = make_tenant("acme")
    body = b'{"client_code": "acme", "model_name": "x", "dataset_filename": "d.js'
    response = client.post(
        "/fine_tuning/submit-finetune", headers={**acme, "Content-Type": "application/json"}, content=body
    )
    assert response.status_code == 422, response.text
    assert response.json()["ok"] is False and "request_id" in response.json()
    assert response.json()["error"].startswith("the request body is not valid JSON: Unterminated string")
    assert "at line 1 column" in response.json()["error"]
