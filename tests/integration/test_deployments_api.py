"""Deployments through the API with the real local serving backend: `ministudio-serve` subprocesses on a tiny random
Llama (SmolLM2's tokenizer), the dispatch worker run as Lambda's event source would, the proxy, usage and logs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from functions.compute.machine import process_key
from functions.core.settings import get_settings
from tests.helpers.deployments import chat, register_fine_tuned, sse, tiny_adapter_files, until
from tests.helpers.openai_schema import assert_openai

Headers = dict[str, str]


def test_base_deployment_serves_chat_streams_logs_usage_and_deletes(
    client: TestClient, make_tenant: Callable[..., Headers], serving: Callable[[], int], tiny_dir: Path
) -> None:
    acme = make_tenant("acme")
    model = str(tiny_dir)
    created = client.post("/v1/deployments", json={"model": model}, headers=acme)
    assert created.status_code == 200, created.text
    made = created.json()
    assert made["status"] == "pending" and made["object"] == "deployment" and made["name"].startswith("vllm-base-")
    assert client.post("/v1/chat/completions", json=chat(model), headers=acme).status_code == 503  # not ready yet
    serving()
    ready = until(client, acme, made["id"], "ready", "failed")
    assert ready["status"] == "ready", ready["error"]
    assert ready["endpoint"].startswith("http://127.0.0.1:") and ready["ready_replicas"] == 1

    reply = client.post("/v1/chat/completions", json=chat(model, temperature=0), headers=acme)
    assert reply.status_code == 200, reply.text
    assert_openai("CreateChatCompletionResponse", reply.json())
    streamed = client.post("/v1/chat/completions", json=chat(model, temperature=0, stream=True), headers=acme)
    chunks = sse(streamed.text)
    for chunk in chunks:
        assert_openai("CreateChatCompletionStreamResponse", chunk)
    assert not any(c.get("usage") for c in chunks), "usage only when the caller asks for it"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == reply.json()["choices"][0]["message"]["content"]
    asked = client.post(
        "/v1/chat/completions",
        json=chat(model, stream=True, stream_options={"include_usage": True}),
        headers={**acme, "X-User-ID": "end-user-1"},
    )
    assert sse(asked.text)[-1]["usage"]["completion_tokens"] >= 1
    completion = client.post("/v1/completions", json={"model": model, "prompt": "Once", "max_tokens": 3}, headers=acme)
    assert completion.status_code == 200 and completion.json()["object"] == "text_completion"

    usage = client.get("/v1/usage", headers=acme).json()
    assert usage["data"][0]["model"] == model and usage["data"][0]["requests"] == 4
    assert usage["completion_tokens"] >= 4 and usage["prompt_tokens"] > 0
    logs = client.get("/v1/logs", params={"limit": 2}, headers=acme).json()
    assert len(logs["data"]) == 2 and logs["has_more"] and logs["data"][0]["route"] == "/v1/completions"
    assert logs["data"][1]["user"] == "end-user-1" and logs["data"][1]["stream"] is True
    other = make_tenant("other")
    assert client.get("/v1/usage", headers=other).json()["data"] == []
    assert client.post("/v1/chat/completions", json=chat(model), headers=other).status_code == 404
    assert client.get(f"/v1/deployments/{made['id']}", headers=other).status_code == 404

    state = json.loads((Path(get_settings().local_serving_dir or "") / made["name"] / "state.json").read_text())
    deleting = client.delete(f"/v1/deployments/{made['id']}", headers=acme).json()
    assert deleting["status"] == "deleting"
    assert client.post("/v1/chat/completions", json=chat(model), headers=acme).status_code == 404
    serving()
    assert until(client, acme, made["id"], "deleted")["deleted_at"]
    assert process_key(state["pid"]) != state["pid_key"], "the server process is gone"


def _register_adapter(tmp_path: Path, tag: str, corrupt: bool = False) -> str:
    base = get_settings().base_models[0]  # what the server serves: the tiny dir
    return register_fine_tuned("acme", base, tag, tiny_adapter_files(tmp_path / tag, base, corrupt))


def test_adapters_ride_on_the_base_server_and_a_corrupt_one_fails_alone(
    client: TestClient, make_tenant: Callable[..., Headers], serving: Callable[[], int], tiny_dir: Path, tmp_path: Path
) -> None:
    acme = make_tenant("acme")
    base = client.post("/v1/deployments", json={"model": str(tiny_dir)}, headers=acme).json()
    serving()
    assert until(client, acme, base["id"], "ready", "failed")["status"] == "ready"
    good, bad = _register_adapter(tmp_path, "good"), _register_adapter(tmp_path, "bad", corrupt=True)

    rider = client.post("/v1/deployments", json={"model": good}, headers=acme).json()
    broken = client.post("/v1/deployments", json={"model": bad}, headers=acme).json()
    serving()
    rider = until(client, acme, rider["id"], "ready", "failed")
    assert rider["status"] == "ready" and rider["shared"] and rider["name"] == base["name"], rider["error"]
    assert rider["adapters"] == [good]
    broken = until(client, acme, broken["id"], "ready", "failed")
    assert broken["status"] == "failed" and broken["error"]["code"] == "invalid_adapter", broken
    for model in (good, str(tiny_dir)):  # the server keeps serving the adapter and the base model
        reply = client.post("/v1/chat/completions", json=chat(model), headers=acme)
        assert reply.status_code == 200 and reply.json()["model"] == model, reply.text
    failed_chat = client.post("/v1/chat/completions", json=chat(bad), headers=acme)  # says that it failed, and why
    assert failed_chat.status_code == 503 and failed_chat.json()["error"]["code"] == "deployment_failed"
    assert "Invalid LoRA adapter" in failed_chat.json()["error"]["message"]

    # Deleting the base keeps the server while the adapter rides on it; the adapter's deletion releases it.
    client.delete(f"/v1/deployments/{base['id']}", headers=acme)
    serving()
    assert until(client, acme, base["id"], "deleted")
    assert client.post("/v1/chat/completions", json=chat(good), headers=acme).status_code == 200
    client.delete(f"/v1/deployments/{rider['id']}", headers=acme)
    serving()
    assert until(client, acme, rider["id"], "deleted")
    assert not (Path(get_settings().local_serving_dir or "") / base["name"]).exists()


def test_deploy_requests_are_checked_and_seed_routes_answer_with_seed_shapes(
    client: TestClient, make_tenant: Callable[..., Headers], serving: Callable[[], int], tiny_dir: Path
) -> None:
    acme = make_tenant("acme")
    bad = [
        ({"model": "gpt-unknown"}, 400, "model"),
        ({"model": str(tiny_dir), "min_replicas": 3, "max_replicas": 2}, 400, "max_replicas"),
        ({"model": str(tiny_dir), "gpu_count": -1}, 400, "gpu_count"),
        ({"model": str(tiny_dir), "prometheus_threshold": 0}, 400, "prometheus_threshold"),
        ({"model": "ft:x:acme:s:ftjob-aaaaaaaaaaaaaaaaaaaaaaaa"}, 404, "model"),
    ]
    for body, status, param in bad:
        answer = client.post("/v1/deployments", json=body, headers=acme)
        assert answer.status_code == status and answer.json()["error"]["param"] == param, (body, answer.text)
    assert client.get("/v1/deployments", headers=acme).json()["data"] == []  # nothing half-made

    seed = {"client_code": "", "model_id": str(tiny_dir), "gpu_count": 1, "min_replicas": 1, "max_replicas": 2}
    made = client.post("/inference/deploy/base", json={**seed, "prometheus_threshold": 5}, headers=acme)
    assert made.status_code == 200, made.text
    assert made.json()["status"] == "pending" and made.json()["deployment"].startswith("vllm-base-")
    assert (
        client.post("/inference/deploy/base", json={**seed, "client_code": "globex"}, headers=acme).status_code == 404
    )
    unknown = client.post("/inference/deploy/base", json={**seed, "model_id": "facebook/opt-125m"}, headers=acme)
    assert unknown.status_code == 400 and unknown.json()["ok"] is False and "model" in unknown.json()["error"]
    weights = {"client_code": "acme", "base_model": "gpt-neo", "fine_tuned_weights_path": "/models/acme/myweights"}
    missing = client.post("/inference/deploy/fine_tuned", json=weights, headers=acme)
    assert missing.status_code == 404 and "fine_tuned_weights_path" in missing.json()["error"]
    serving()
    deployment_id = made.json()["deployment_id"]
    assert until(client, acme, deployment_id, "ready", "failed")["status"] == "ready"
    infer = client.post(
        f"/inference/infer/{tiny_dir}", json={"prompt": "Hi", "max_length": 4}, headers={**acme, "X-User-ID": "u1"}
    )
    assert infer.status_code == 200 and infer.json()["tokens_generated"] >= 1, infer.text
    assert client.get("/v1/logs", headers=acme).json()["data"][0]["user"] == "u1"
    nothing = client.post("/inference/infer/not-deployed", json={"prompt": "Hi"}, headers=acme)
    assert nothing.status_code == 404 and nothing.json()["ok"] is False
