"""Scale to zero on the real local backend: `ministudio-serve` subprocesses on the tiny model behind the control plane.
Readiness reaches the record within a second of the server answering /ready (nobody polls for it); an idle
deployment's process is stopped and a request wakes it; a server that cannot start again answers the held request
with a 503 naming the reason. (The platform-wide scenario with SmolLM2 and 8 concurrent requests is in
tests/e2e/test_scale_to_zero.py.)"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from functions.compute import get_serving_backend
from functions.compute.machine import process_key
from functions.core.settings import get_settings
from functions.deployments import activity, idle
from functions.store.cache import get_cache
from functions.store.mongo import get_store
from tests.helpers.deployments import chat, until

Headers = dict[str, str]


def _state(name: str) -> dict[str, Any]:
    return json.loads((Path(get_settings().local_serving_dir or "") / name / "state.json").read_text())


def _sleep_now(deployment_id: str) -> None:
    """As if idle_seconds had passed without a request: the sweep the reconciler runs puts it to sleep."""
    store = get_store()
    store.deployments.col.update_one({"_id": deployment_id}, {"$set": {"ready_at": int(time.time()) - 3600}})
    get_cache().delete(activity.last_key(deployment_id))
    settings = get_settings()
    assert deployment_id in idle.sweep(store, get_cache(), get_serving_backend(settings), settings)


def test_a_deployment_shows_ready_within_a_second_of_its_server_answering_ready(
    client: TestClient, make_tenant: Callable[..., Headers], serving: Callable[..., int], tiny_dir: Path
) -> None:
    acme = make_tenant("acme")
    made = client.post("/v1/deployments", json={"model": str(tiny_dir)}, headers=acme).json()
    serving()  # the dispatch worker starts the server and returns: nothing reads the deployment after this
    port, key = _state(made["name"])["port"], get_settings().inference_api_key
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the server's own readiness, as a client of it sees it
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", headers=headers, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    answered = time.monotonic()
    while get_store().deployments.get(made["id"]).status != "ready":  # the record, read without any refresh
        assert time.monotonic() - answered < 1.0, "the record did not follow the server's readiness within 1 s"
        time.sleep(0.02)


def test_an_idle_server_is_stopped_and_a_request_wakes_it_or_hears_why_it_cannot_start(
    client: TestClient,
    make_tenant: Callable[..., Headers],
    serving: Callable[..., int],
    tiny_dir: Path,
    tmp_path: Path,
) -> None:
    acme = make_tenant("acme")
    body = {"model": str(tiny_dir), "min_replicas": 0, "idle_seconds": 5}
    made = client.post("/v1/deployments", json=body, headers=acme).json()
    assert made["idle_seconds"] == 5
    serving()
    assert until(client, acme, made["id"], "ready", "failed")["status"] == "ready"
    assert client.post("/v1/chat/completions", json=chat(str(tiny_dir)), headers=acme).status_code == 200
    first = _state(made["name"])

    _sleep_now(made["id"])
    asleep = client.get(f"/v1/deployments/{made['id']}", headers=acme).json()
    assert asleep["status"] == "idle" and asleep["endpoint"], asleep  # routing kept
    assert process_key(first["pid"]) != first["pid_key"], "the idle server's process is gone"

    started = time.monotonic()
    woken = client.post("/v1/chat/completions", json=chat(str(tiny_dir), stream=True), headers=acme)
    assert woken.status_code == 200 and woken.text.rstrip().endswith("data: [DONE]"), woken.text
    assert time.monotonic() - started < 30
    again = _state(made["name"])
    assert again["pid"] != first["pid"] and again["port"] == first["port"]
    assert client.get(f"/v1/deployments/{made['id']}", headers=acme).json()["status"] == "ready"
    assert [e["status_code"] for e in client.get("/v1/logs", headers=acme).json()["data"]] == [200, 200]

    # The model's files go away while it sleeps: the wake-up cannot load it, and the held request hears why.
    _sleep_now(made["id"])
    shutil.move(str(tiny_dir), tmp_path / "moved")
    try:
        refused = client.post("/v1/chat/completions", json=chat(str(tiny_dir)), headers=acme)
    finally:
        shutil.move(str(tmp_path / "moved"), str(tiny_dir))
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "deployment_failed" and "could not start" in error["message"], error
    failed = client.get(f"/v1/deployments/{made['id']}", headers=acme).json()
    assert failed["status"] == "failed" and "could not start" in failed["error"]["message"]


def test_with_a_standby_a_wake_up_takes_the_pre_imported_server_and_starts_in_a_blink(
    client: TestClient, make_tenant: Callable[..., Headers], serving: Callable[..., int], tiny_dir: Path
) -> None:
    acme = make_tenant("acme")
    body = {"model": str(tiny_dir), "min_replicas": 0, "idle_seconds": 5}
    made = client.post("/v1/deployments", json=body, headers=acme).json()
    serving(LOCAL_SERVING_STANDBY="1")
    assert until(client, acme, made["id"], "ready", "failed")["status"] == "ready"
    standby = Path(get_settings().local_serving_dir or "") / ".standby"
    deadline = time.monotonic() + 120
    while not (standby / "warm").exists():  # started once the server was ready, then importing
        assert time.monotonic() < deadline, "the standby never got warm"
        time.sleep(0.1)
    waiting = int((standby / "warm").read_text())

    _sleep_now(made["id"])
    woken = client.post("/v1/chat/completions", json=chat(str(tiny_dir)), headers=acme)
    assert woken.status_code == 200, woken.text
    state = _state(made["name"])
    assert state["pid"] == waiting, "the wake-up took the standby, not a fresh process"
    assert state["ready_since"] - state["started_at"] < 5  # the tiny model's load only: no imports
    log = (Path(get_settings().local_serving_dir or "") / made["name"] / "server.log").read_text()
    assert log.count(" ready in ") == 2, "the standby became the server: its output went to the deployment's log"
