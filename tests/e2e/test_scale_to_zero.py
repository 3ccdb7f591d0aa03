"""Scale to zero end to end on the local platform with SmolLM2: a deployment with `min_replicas: 0` and a short
`idle_seconds` goes `idle` on the reconciler's schedule and its server process is gone; 8 concurrent requests to the
idle model (one streamed) wait while one server starts and are all answered; a model whose start fails answers all 8
with a 503 naming the reason, and nothing hangs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from functions.compute.machine import process_key
from functions.core.settings import get_settings
from functions.local.runtime import Platform
from tests.e2e import zorbia

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]
BASE = zorbia.BASE
IDLE_SECONDS = 5


def _chat(api: httpx.Client) -> httpx.Response:
    body = {"model": BASE, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4, "temperature": 0}
    return api.post("/v1/chat/completions", json=body)


def test_an_idle_deployment_stops_its_server_and_requests_wake_it(
    platform: Platform, wait_for: Callable[..., Any]
) -> None:
    admin = httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {platform.admin_key}"})
    assert admin.post("/v1/tenants", json={"client_code": "sleepy"}).status_code == 201
    key = admin.post("/v1/tenants/sleepy/api_keys", json={"name": "t"}).json()["key"]
    api = httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {key}"}, timeout=180)
    made = api.post("/v1/deployments", json={"model": BASE, "min_replicas": 0, "idle_seconds": IDLE_SECONDS}).json()
    assert made["idle_seconds"] == IDLE_SECONDS, made
    folder = Path(get_settings().local_serving_dir or "") / made["name"]

    def status() -> str:
        return str(api.get(f"/v1/deployments/{made['id']}").json()["status"])

    def asleep() -> dict[str, Any]:
        """Idle on the reconciler's schedule (every 5 s here), with its server process gone."""
        wait_for(lambda: status() == "idle", timeout=60, interval=0.5)
        state = json.loads((folder / "state.json").read_text())
        assert state["asleep"]
        # The record goes idle first (a request from then on wakes it), then the server is stopped (SIGTERM, grace).
        wait_for(lambda: process_key(state["pid"]) != state["pid_key"], timeout=15, interval=0.1)
        return state

    def starts() -> int:
        return (folder / "server.log").read_text().count(" ready in ")

    wait_for(lambda: status() in ("ready", "failed"), timeout=300, interval=0.5)
    assert status() == "ready"
    first = asleep()

    # 8 concurrent requests to the idle model, one of them streamed: they wait while one server starts, then all
    # are answered (the stream too).
    client = OpenAI(base_url=f"{platform.url}/v1", api_key=key, max_retries=0, timeout=180)

    def streamed() -> str:
        stream = client.chat.completions.create(
            model=BASE, messages=[{"role": "user", "content": "Say hi"}], max_tokens=4, stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    sent = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        text = pool.submit(streamed)
        answers = list(pool.map(lambda _: _chat(api), range(7)))
        assert text.result(), "the streamed answer has content"
    print(f"idle -> 8 answers: {time.monotonic() - sent:.2f} s")
    assert [a.status_code for a in answers] == [200] * 7, [a.text for a in answers if a.status_code != 200]
    assert starts() == 2, "one server for all 8"
    assert status() == "ready" and json.loads((folder / "state.json").read_text())["port"] == first["port"]

    # Its model's files are gone while it sleeps: the start fails, and all 8 hear why, in bounded time.
    asleep()
    spec = json.loads((folder / "spec.json").read_text())
    (folder / "spec.json").write_text(json.dumps({**spec, "model": str(folder / "no-such-model")}))
    sent = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        refused = list(pool.map(lambda _: _chat(api), range(8)))
    assert time.monotonic() - sent < get_settings().wake_timeout_seconds
    assert [r.status_code for r in refused] == [503] * 8, [r.text for r in refused]
    errors = [r.json()["error"] for r in refused]
    assert {e["code"] for e in errors} == {"deployment_failed"}
    assert all("could not start" in e["message"] for e in errors), errors[0]
    assert status() == "failed"
    usage = api.get("/v1/usage").json()["data"]
    assert [(u["model"], u["requests"]) for u in usage] == [(BASE, 8)], usage  # usage history kept throughout
    api.delete(f"/v1/deployments/{made['id']}")
