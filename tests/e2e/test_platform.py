"""The local platform as `make run` starts it (moto server, redis-server, API under uvicorn, SQS pollers),
driven through its HTTP API by the official `openai` SDK, curl-style uploads and an S3 drop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from openai import OpenAI

from functions.core.settings import get_settings
from functions.local.procs import free_port
from functions.local.runtime import Platform
from tests.e2e.conftest import ISOLATE
from tests.helpers.datasets import chat_lines

pytestmark = pytest.mark.e2e


def test_openai_sdk_uploads_a_file_that_the_worker_validates(
    openai_client: OpenAI, tmp_path: Path, wait_for: Callable[..., Any]
) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(chat_lines(20))
    created = openai_client.files.create(file=path.open("rb"), purpose="fine-tune")
    assert created.status == "uploaded" and created.bytes == path.stat().st_size
    processed = wait_for(lambda: (f := openai_client.files.retrieve(created.id)).status == "processed" and f)
    assert processed.filename == "train.jsonl"
    assert created.id in [f.id for f in openai_client.files.list()]
    assert openai_client.files.content(created.id).read() == path.read_bytes()
    assert openai_client.files.delete(created.id).deleted is True


def test_openai_sdk_uploads_in_parts(openai_client: OpenAI, tmp_path: Path, wait_for: Callable[..., Any]) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(chat_lines(400))
    upload = openai_client.uploads.upload_file_chunked(
        file=path, mime_type="application/jsonl", purpose="fine-tune", part_size=16 * 1024
    )
    assert upload.status == "completed" and upload.file is not None
    file_id = upload.file.id
    wait_for(lambda: openai_client.files.retrieve(file_id).status == "processed")


def test_presigned_post_and_s3_drop_both_register(platform: Platform, wait_for: Callable[..., Any]) -> None:
    headers = {"Authorization": f"Bearer {platform.demo_key}"}
    data = chat_lines(12)
    upload = httpx.post(
        f"{platform.url}/v1/uploads",
        headers=headers,
        json={"filename": "p.jsonl", "purpose": "fine-tune", "bytes": len(data), "mime_type": "application/jsonl"},
    ).json()
    post = upload["presigned_post"]
    assert httpx.post(post["url"], data=post["fields"], files={"file": ("p.jsonl", data)}).status_code in (200, 204)
    settings = get_settings()
    s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url)
    s3.put_object(Bucket=settings.aws_bucket_name, Key="incoming/demo/dropped.jsonl", Body=data)

    def both_processed() -> bool:
        files = httpx.get(f"{platform.url}/v1/files", headers=headers).json()["data"]
        names = {f["filename"]: f["status"] for f in files}
        return names.get("p.jsonl") == "processed" and names.get("dropped.jsonl") == "processed"

    wait_for(both_processed)


def test_requests_are_logged_to_daily_json_files(platform: Platform) -> None:
    httpx.get(f"{platform.url}/health", headers={"X-Request-ID": "e2e-log-check"})

    def logged() -> bool:  # the access line is written once the answer has gone, so it may trail the answer a bit
        log_files = list(Path(platform.log_dir or "").glob("ministudio-*.jsonl"))
        lines = [json.loads(line) for f in log_files for line in f.read_text().splitlines()]
        return any(line.get("request_id") == "e2e-log-check" and line.get("status") == 200 for line in lines)

    deadline = time.monotonic() + 10
    while not logged() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logged()


def test_make_run_entry_point_prints_ready_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ISOLATE}  # its own moto and redis, as on a fresh machine
    proc = subprocess.Popen(
        [sys.executable, "-m", "functions.cli", "run", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        seen = []
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "Mini Studio ready" in line:
                break
        assert any("Mini Studio ready" in line for line in seen), "".join(seen)
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["status"] == "healthy"
    finally:
        proc.send_signal(2)  # Ctrl-C
        assert proc.wait(timeout=30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health")
