"""Inference servers that die, for real: `ministudio-serve` subprocesses on a tiny random Llama behind the control
plane, SIGKILLed mid-stream, restarted with their adapters, failed past the restart limit; what each tenant then
reads (the openai SDK's error, chat's answer, the deployment's error) and what it never reads (another tenant's)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

from functions.core.settings import get_settings
from functions.local.procs import free_port
from functions.store.mongo import get_store
from tests.helpers.deployments import chat, register_fine_tuned, tiny_adapter_files, until
from tests.helpers.waiting import wait_for

Headers = dict[str, str]


def _state(name: str) -> dict[str, Any]:
    return json.loads((Path(get_settings().local_serving_dir or "") / name / "state.json").read_text())


def _kill(name: str) -> dict[str, Any]:
    state = _state(name)
    os.kill(state["pid"], signal.SIGKILL)
    return state


def _adapter(tmp_path: Path, tenant: str, tag: str) -> str:
    base = get_settings().base_models[0]
    return register_fine_tuned(tenant, base, tag, tiny_adapter_files(tmp_path / tag, base))


@pytest.fixture
def live_api(client: TestClient) -> Iterator[str]:
    """The same app under uvicorn on a real port: the openai SDK reads its streams as they come."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_a_stream_cut_by_a_dying_server_raises_in_the_openai_sdk_with_the_request_id(
    client: TestClient,
    make_tenant: Callable[..., Headers],
    serving: Callable[..., int],
    tiny_dir: Path,
    live_api: str,
) -> None:
    acme = make_tenant("acme")
    made = client.post("/v1/deployments", json={"model": str(tiny_dir)}, headers=acme).json()
    serving(SERVING_RESTART_LIMIT="0")
    assert until(client, acme, made["id"], "ready", "failed")["status"] == "ready"
    sdk = openai.OpenAI(base_url=f"{live_api}/v1", api_key=acme["Authorization"][7:], max_retries=0, timeout=60)

    stream = sdk.chat.completions.create(
        **chat(str(tiny_dir), max_tokens=200), stream=True, extra_headers={"X-Request-ID": "req-cut-1"}
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
            if len(received) == 2:  # the answer has begun: the server dies mid-way
                _kill(made["name"])
    assert 2 <= len(received) < 200, "the stream was cut, and the caller was told"
    assert "req-cut-1" in caught.value.message and caught.value.code == "stream_interrupted"
    assert not any(c.choices and c.choices[0].finish_reason for c in received)
    # The usage log is written after the stream's last event has gone (off the event loop): it lands a moment later
    logs = wait_for(lambda: client.get("/v1/logs", headers=acme).json()["data"], what="the stream's usage log")
    logged = logs[0]
    assert (logged["request_id"], logged["status_code"], logged["stream"]) == ("req-cut-1", 502, True)
    assert "127.0.0.1" not in (logged["error"] or "")


def test_a_servers_error_answer_reaches_the_caller_in_the_routes_shape_with_its_request_id(
    client: TestClient, make_tenant: Callable[..., Headers], serving: Callable[..., int], tiny_dir: Path
) -> None:
    acme = make_tenant("acme")
    made = client.post("/v1/deployments", json={"model": str(tiny_dir)}, headers=acme).json()
    serving()
    assert until(client, acme, made["id"], "ready", "failed")["status"] == "ready"
    asked = {**acme, "X-Request-ID": "req-err-1"}

    too_long = client.post("/v1/chat/completions", json=chat(str(tiny_dir), max_tokens=5000), headers=asked)
    assert too_long.status_code == 400, too_long.text
    error = too_long.json()["error"]
    assert error["request_id"] == "req-err-1" and error["code"] == "context_length_exceeded"
    assert error["param"] == "max_tokens" and error["type"] == "invalid_request_error"
    assert "maximum context length" in error["message"] and set(too_long.json()) == {"error"}

    seed = client.post(f"/inference/infer/{tiny_dir}", json={"max_length": 4}, headers=asked)  # no prompt
    assert seed.status_code == 400, seed.text
    body = seed.json()
    assert body["ok"] is False and body["request_id"] == "req-err-1" and "prompt" in body["error"]
    assert set(body) == {"ok", "error", "request_id"}, "the server's details, timestamp and own id stay behind"
    logged = client.get("/v1/logs", headers=acme).json()["data"]
    assert [e["status_code"] for e in logged[:2]] == [400, 400] and "prompt" in logged[0]["error"]


def test_a_shared_server_that_dies_tells_each_tenant_only_about_its_own_deployment(
    client: TestClient,
    make_tenant: Callable[..., Headers],
    serving: Callable[..., int],
    tiny_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    acme, globex = make_tenant("acme"), make_tenant("globex")
    base = client.post("/v1/deployments", json={"model": str(tiny_dir)}, headers=acme).json()
    serving(SERVING_RESTART_LIMIT="0")
    assert until(client, acme, base["id"], "ready", "failed")["status"] == "ready"
    theirs = _adapter(tmp_path, "globex", "secret")
    rider = client.post("/v1/deployments", json={"model": theirs}, headers=globex).json()
    serving()
    rider = until(client, globex, rider["id"], "ready", "failed")
    assert rider["status"] == "ready" and rider["name"] == base["name"], rider
    assert client.post("/v1/chat/completions", json=chat(theirs), headers=globex).status_code == 200
    port = str(_state(base["name"])["port"])

    caplog.set_level(logging.WARNING, logger="functions.compute.local_serving")
    _kill(base["name"])
    # The records follow the exit at once (no GET refreshes a ready record): nobody polls for them.
    deadline = time.monotonic() + 10
    while get_store().deployments.get(rider["id"]).status != "failed" and time.monotonic() < deadline:
        time.sleep(0.1)
    acme_sees = client.get(f"/v1/deployments/{base['id']}", headers=acme).json()
    globex_sees = client.get(f"/v1/deployments/{rider['id']}", headers=globex).json()
    assert acme_sees["status"] == "failed" and globex_sees["status"] == "failed", (acme_sees, globex_sees)
    assert acme_sees["error"]["message"] == "the inference server exited with code -9", acme_sees
    assert globex_sees["error"]["code"] == "host_failed"
    job_id = theirs.rsplit(":", 1)[1]
    for leak in ("globex", job_id, "ft:", "s3://", "127.0.0.1", port):
        assert leak not in json.dumps(acme_sees["error"]), leak
    for leak in ("acme", base["id"], "s3://", "127.0.0.1", port):
        assert leak not in json.dumps(globex_sees["error"]), leak
    # The operator's log has the server's last output, the other tenant's adapter included.
    assert any("last output" in r.getMessage() and theirs in r.getMessage() for r in caplog.records)

    for who, model in ((acme, str(tiny_dir)), (globex, theirs)):
        answer = client.post("/v1/chat/completions", json=chat(model), headers=who)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "deployment_failed", answer.text
        assert "redeploy" in answer.json()["error"]["message"]


def test_a_killed_server_restarts_with_its_adapters_then_fails_past_the_limit(
    client: TestClient,
    make_tenant: Callable[..., Headers],
    serving: Callable[..., int],
    tiny_dir: Path,
    tmp_path: Path,
) -> None:
    acme = make_tenant("acme")
    model = str(tiny_dir)
    base = client.post("/v1/deployments", json={"model": model}, headers=acme).json()
    serving(SERVING_RESTART_LIMIT="1", SERVING_RESTART_BACKOFF_SECONDS="0.5")
    assert until(client, acme, base["id"], "ready", "failed")["status"] == "ready"
    tuned = _adapter(tmp_path, "acme", "mine")
    rider = client.post("/v1/deployments", json={"model": tuned}, headers=acme).json()
    serving()
    assert until(client, acme, rider["id"], "ready", "failed")["status"] == "ready"

    first = _kill(base["name"])
    restarting = until(client, acme, base["id"], "deploying", "failed", timeout=5)
    assert restarting["status"] == "deploying", restarting
    assert restarting["status_message"] == "restarting after exit code -9 (attempt 1 of 1)"
    answer = client.post("/v1/chat/completions", json=chat(model), headers=acme)
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "model_not_ready", answer.text
    back = until(client, acme, base["id"], "ready", "failed", timeout=90)
    assert back["status"] == "ready" and back["status_message"] is None, back
    assert until(client, acme, rider["id"], "ready", "failed", timeout=10)["status"] == "ready"
    assert _state(base["name"])["pid"] != first["pid"] and _state(base["name"])["adapters"] == [tuned]
    assert f"{tuned}=" in " ".join(_cmdline(_state(base["name"])["pid"])), "the adapter was loaded at start"
    for asked in (model, tuned):
        reply = client.post("/v1/chat/completions", json=chat(asked), headers=acme)
        assert reply.status_code == 200 and reply.json()["model"] == asked, reply.text

    _kill(base["name"])  # a second exit in a row: past the limit
    failed = until(client, acme, base["id"], "failed", timeout=10)
    assert failed["error"]["message"] == "the inference server exited with code -9; 1 restart(s) did not bring it back"
    answer = client.post("/v1/chat/completions", json=chat(model), headers=acme)
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "deployment_failed", answer.text
    message = answer.json()["error"]["message"]
    assert message.startswith(f"your deployment {base['id']} of model {model!r} failed: the inference server exited")
    assert message.endswith("redeploy it with POST /v1/deployments")
    adapter_chat = client.post("/v1/chat/completions", json=chat(tuned), headers=acme)
    assert adapter_chat.status_code == 503 and "the server hosting this adapter failed" in adapter_chat.text


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
