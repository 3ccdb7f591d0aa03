"""Requests that must not be taken at face value: an Idempotency-Key reused for a different job (409, as Stripe and
OpenAI define the header), stored free-text headers over their cap (400 naming the header), and a request body that
stalls (408 within the timeout, from a real uvicorn, over a raw socket)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.helpers.datasets import chat_lines
from tests.helpers.monitoring import serve
from tests.helpers.openai_schema import assert_openai

Headers = dict[str, str]
BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


def validated_file(client: TestClient, headers: Headers, ingest: Callable[[], int]) -> str:
    file_id = client.post(
        "/v1/files", headers=headers, data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", chat_lines(20))}
    ).json()["id"]
    ingest()
    return str(file_id)


def test_idempotency_key_reused_with_a_different_body_is_a_409_naming_the_fields(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int], dispatched: Any
) -> None:
    acme = make_tenant("acme")
    file_id = validated_file(client, acme, ingest)
    keyed = {**acme, "Idempotency-Key": "order-42"}
    body = {"model": BASE, "training_file": file_id, "suffix": "calc", "hyperparameters": {"n_epochs": 2}}
    first = client.post("/v1/fine_tuning/jobs", headers=keyed, json=body)
    assert first.status_code == 200, first.text
    # Same key, same request (spelled differently: "auto" is what an absent hyperparameter means): the first job
    same = {**body, "hyperparameters": {"n_epochs": 2, "batch_size": "auto"}}
    again = client.post("/v1/fine_tuning/jobs", headers=keyed, json=same)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    # Same key, different request: refused, naming what differs, and no second job
    changed = {**body, "suffix": "other", "hyperparameters": {"n_epochs": 3}}
    reused = client.post("/v1/fine_tuning/jobs", headers=keyed, json=changed)
    assert reused.status_code == 409, reused.text
    assert_openai("ErrorResponse", reused.json())
    error = reused.json()["error"]
    assert error["param"] == "Idempotency-Key" and error["code"] == "idempotency_key_reused"
    assert "suffix" in error["message"] and "hyperparameters" in error["message"]
    assert "training_file" not in error["message"]
    assert len(client.get("/v1/fine_tuning/jobs", headers=acme).json()["data"]) == 1
    assert len(dispatched()) == 1


def test_stored_free_text_headers_over_their_cap_are_a_400_naming_the_header(
    client: TestClient, make_tenant: Callable[..., Headers]
) -> None:
    acme = make_tenant("acme")
    chat = {"model": "nothing-deployed", "messages": [{"role": "user", "content": "hi"}]}
    long_user = {**acme, "X-User-ID": "u" * 257}
    refused = client.post("/v1/chat/completions", headers=long_user, json=chat)
    assert refused.status_code == 400, refused.text
    assert_openai("ErrorResponse", refused.json())
    assert refused.json()["error"]["param"] == "X-User-ID" and "256" in refused.json()["error"]["message"]
    assert refused.json()["error"]["request_id"] == refused.headers["x-request-id"]
    seed = client.post("/inference/infer/some-model", headers=long_user, json={"prompt": "hi"})
    assert seed.status_code == 400 and seed.json()["ok"] is False and "X-User-ID" in seed.json()["error"]
    # At the cap it passes the check (and meets the route's own answer: nothing is deployed)
    at_cap = client.post("/v1/chat/completions", headers={**acme, "X-User-ID": "u" * 256}, json=chat)
    assert at_cap.status_code == 404
    long_key = {**acme, "Idempotency-Key": "k" * 256}
    job = client.post("/v1/fine_tuning/jobs", headers=long_key, json={"model": BASE, "training_file": "file-x"})
    assert job.status_code == 400 and job.json()["error"]["param"] == "Idempotency-Key"
    # The body's `user` is stored the same way as X-User-ID, under the same cap
    long_body_user = client.post("/v1/chat/completions", headers=acme, json={**chat, "user": "u" * 257})
    assert long_body_user.status_code == 400 and long_body_user.json()["error"]["param"] == "user"


def stalled_request(port: int, path: str, headers: Headers, timeout: float) -> tuple[bytes, float]:
    """Send the headers and part of the body, then nothing: what comes back, and when the server closed."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{head}"
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"{request}Content-Length: 200\r\n\r\n".encode() + b'{"model": "')
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass  # the server neither answered nor closed
    return received, time.monotonic() - started


def test_a_stalled_request_body_is_answered_408_and_closed_within_the_timeout(
    env: Callable[..., Any], admin: Headers
) -> None:
    from functions.api.app import create_app

    env(REQUEST_BODY_TIMEOUT_SECONDS="1")
    with serve(create_app()) as server:
        answer, elapsed = stalled_request(server.port, "/v1/tenants", admin, timeout=6)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert elapsed < 4, elapsed  # answered and closed: the read ended before the client's own timeout
        body = answer.split(b"\r\n\r\n", 1)[1]
        assert b'"code":"request_timeout"' in body.replace(b" ", b"") and b"stalled" in body
        seed, _ = stalled_request(server.port, "/fine_tuning/submit-finetune", admin, timeout=6)
        assert seed.startswith(b"HTTP/1.1 408") and b'"ok":false' in seed.replace(b" ", b"")
