"""Files through the API (OpenAI /v1/files and seed 001's upload route) → S3 event → ingest worker → validated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from functions.core.settings import get_settings
from tests.helpers.datasets import chat_lines, prompt_completion_lines
from tests.helpers.openai_schema import assert_openai

Headers = dict[str, str]


def upload(client: TestClient, headers: Headers, data: bytes, name: str = "train.jsonl") -> Any:
    return client.post("/v1/files", headers=headers, data={"purpose": "fine-tune"}, files={"file": (name, data)})


def test_uploaded_chat_file_is_validated_by_the_worker(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    created = upload(client, acme, chat_lines(12))
    assert created.status_code == 200, created.text
    assert_openai("OpenAIFile", created.json())
    assert created.json()["status"] == "uploaded"
    assert ingest() >= 1
    file = client.get(f"/v1/files/{created.json()['id']}", headers=acme).json()
    assert_openai("OpenAIFile", file)
    assert file["status"] == "processed"
    validation = file["validation"]
    assert validation["status"] == "validated" and validation["format"] == "chat"
    assert validation["examples"] == 12 and validation["messages"] == 36 and validation["token_estimate"] > 0


def test_prompt_completion_files_validate_too(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    file_id = upload(client, acme, prompt_completion_lines(10)).json()["id"]
    ingest()
    file = client.get(f"/v1/files/{file_id}", headers=acme).json()
    assert file["status"] == "processed" and file["validation"]["format"] == "prompt_completion"


def test_invalid_file_ends_error_with_line_numbers_and_reasons(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    lines = chat_lines(12).splitlines(keepends=True)
    lines[3] = b'{"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]}\n'
    lines[7] = b'{"messages": [{"role": "user", "content": "truncated"\n'
    file_id = upload(client, acme, b"".join(lines)).json()["id"]
    ingest()
    file = client.get(f"/v1/files/{file_id}", headers=acme).json()
    assert file["status"] == "error"
    errors = file["validation"]["errors"]
    assert [e["line"] for e in errors] == [4, 8]
    assert "bot" in errors[0]["reason"] and file["status_details"] == errors[0]["reason"]


def test_seed_upload_route_returns_the_seed_body_and_mirrors_to_dfs(
    client: TestClient, make_tenant: Callable[..., Headers], dfs: Path, ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    data = chat_lines(11)
    response = client.post("/fine_tuning/upload-dataset/acme", headers=acme, files={"file": ("d.jsonl", data)})
    assert response.status_code == 201
    body = response.json()
    assert body["ok"] is True and body["size_bytes"] == len(data)
    assert body["dataset_s3"].startswith(f"s3://{get_settings().aws_bucket_name}/datasets/acme/{body['dataset_id']}/")
    assert Path(body["dataset_dfs"]).read_bytes() == data
    ingest()
    assert client.get(f"/v1/files/{body['dataset_id']}", headers=acme).json()["status"] == "processed"
    # Empty client_code is not a route; another tenant's code is a 404 with the seed envelope.
    other = client.post("/fine_tuning/upload-dataset/globex", headers=acme, files={"file": ("d.jsonl", data)})
    assert other.status_code == 404 and other.json()["ok"] is False


def test_seed_upload_without_dfs_reports_null_mirror(client: TestClient, make_tenant: Callable[..., Headers]) -> None:
    acme = make_tenant("acme")
    body = client.post(
        "/fine_tuning/upload-dataset/acme", headers=acme, files={"file": ("d.jsonl", chat_lines())}
    ).json()
    assert body["dataset_dfs"] is None


def test_up_front_rejections(client: TestClient, make_tenant: Callable[..., Headers], env: Callable[..., Any]) -> None:
    acme = make_tenant("acme")
    cases = [
        ("photo.png", chat_lines(), 415, "JSONL"),
        ("data.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00", 415, "binary"),
        ("data.jsonl", b"\xff\xfe\xfa not utf8 {}\n", 415, "UTF-8"),
        ("data.jsonl", b"", 422, "empty"),
        ("data.jsonl", b"name,age\nbob,3\n", 422, "line 1"),
    ]
    for name, data, status, words in cases:
        response = upload(client, acme, data, name)
        assert response.status_code == status, (name, data, response.text)
        assert_openai("ErrorResponse", response.json())
        assert words in response.json()["error"]["message"] and response.json()["error"]["param"] == "file"
    wrong_purpose = client.post(
        "/v1/files", headers=acme, data={"purpose": "assistants"}, files={"file": ("d.jsonl", chat_lines())}
    )
    assert wrong_purpose.status_code == 400 and wrong_purpose.json()["error"]["param"] == "purpose"
    missing = client.post("/v1/files", headers=acme, data={"purpose": "fine-tune"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"
    assert client.get("/v1/files", headers=acme).json()["data"] == []  # nothing half-registered


def test_oversize_upload_is_413_without_storing_anything(
    client: TestClient, make_tenant: Callable[..., Headers], env: Callable[..., Any]
) -> None:
    env(MAX_UPLOAD_BYTES="2000")
    acme = make_tenant("acme")
    response = upload(client, acme, chat_lines(200))
    assert response.status_code == 413
    assert_openai("ErrorResponse", response.json())
    seed = client.post("/fine_tuning/upload-dataset/acme", headers=acme, files={"file": ("d.jsonl", chat_lines(200))})
    assert seed.status_code == 413 and seed.json()["ok"] is False
    assert client.get("/v1/files", headers=acme).json()["data"] == []


def test_list_paginates_with_after_limit_and_order(client: TestClient, make_tenant: Callable[..., Headers]) -> None:
    acme = make_tenant("acme")
    ids = [upload(client, acme, chat_lines(10, offset=i)).json()["id"] for i in range(5)]
    page = client.get("/v1/files", headers=acme, params={"limit": 2}).json()
    assert_openai("ListFilesResponse", page)
    assert [f["id"] for f in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    rest = client.get("/v1/files", headers=acme, params={"limit": 10, "after": page["last_id"]}).json()
    assert [f["id"] for f in rest["data"]] == ids[::-1][2:] and rest["has_more"] is False
    asc = client.get("/v1/files", headers=acme, params={"order": "asc"}).json()
    assert [f["id"] for f in asc["data"]] == ids
    empty = client.get("/v1/files", headers=acme, params={"purpose": "batch"}).json()
    assert_openai("ListFilesResponse", empty)
    assert client.get("/v1/files", headers=acme, params={"limit": 0}).status_code == 400


def test_content_streams_back_the_bytes_and_delete_removes_everything(
    client: TestClient, make_tenant: Callable[..., Headers], s3: Any
) -> None:
    acme = make_tenant("acme")
    data = chat_lines(10)
    file_id = upload(client, acme, data).json()["id"]
    content = client.get(f"/v1/files/{file_id}/content", headers=acme)
    assert content.status_code == 200 and content.content == data
    deleted = client.delete(f"/v1/files/{file_id}", headers=acme)
    assert_openai("DeleteFileResponse", deleted.json())
    assert deleted.json() == {"id": file_id, "object": "file", "deleted": True}
    assert client.get(f"/v1/files/{file_id}", headers=acme).status_code == 404
    listed = s3.list_objects_v2(Bucket=get_settings().aws_bucket_name, Prefix=f"datasets/acme/{file_id}/")
    assert listed.get("KeyCount", 0) == 0


def test_request_id_is_echoed_or_minted(client: TestClient) -> None:
    assert client.get("/health", headers={"X-Request-ID": "trace-123"}).headers["x-request-id"] == "trace-123"
    minted = client.get("/health", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
    assert minted.startswith("req_")
