"""Every kind of model the seeds serve, on the local platform, through the control plane (issue 17): the embedding
model deployed and called with the openai SDK's `embeddings.create`; seed 003's `/infer` and `/infer/batch` on it; a
tabular deployment (seed 004) with versions registered, predictions, its logs and delete-models. Another tenant gets
404 for all of it, and a forged `X-Tenant-ID` changes nothing."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from openai import OpenAI

from functions.core.model_kinds import EMBEDDING_MODEL
from functions.local.runtime import Platform
from tests.e2e.test_serving import _api, _settled
from tests.helpers.deployments import register_tabular_versions
from tests.helpers.openai_schema import assert_openai

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def test_embeddings_task_models_and_classical_models_through_the_control_plane(
    platform: Platform, openai_client: OpenAI, wait_for: Callable[..., Any]
) -> None:
    from ministudio_serve.tabular.demo import train_versions

    api = _api(platform)
    # Both at once: the servers start side by side.
    made = [api.post("/v1/deployments", json={"model": m}).json() for m in ("all-MiniLM-L6-v2", "tabular")]
    try:
        embed, tabular = (_settled(api, wait_for, d["id"], timeout=240) for d in made)
        assert (embed["status"], embed["profile"], embed["model"]) == ("ready", "llm", EMBEDDING_MODEL), embed
        assert (tabular["status"], tabular["profile"]) == ("ready", "tabular"), tabular

        # The openai SDK on the same base URL as chat.
        reply = openai_client.embeddings.create(
            model=EMBEDDING_MODEL, input=["A cat sits on the mat.", "A kitten rests on a rug.", "Stock prices fell."]
        )
        assert_openai("CreateEmbeddingResponse", reply.model_dump(exclude_unset=True))
        cat, kitten, stocks = (d.embedding for d in reply.data)
        assert _cosine(cat, kitten) > _cosine(cat, stocks) + 0.2
        assert reply.usage.prompt_tokens > 0

        # Seed 003 on the same deployment: /infer and /infer/batch.
        seed = f"/inference/{embed['id']}"
        infer = api.post(f"{seed}/infer", json={"text": "I love this!", "model": "sentiment"})
        assert infer.status_code == 200 and infer.json()["result"]["label"] == "positive", infer.text
        batch = api.post(
            f"{seed}/infer/batch", json={"requests": [{"text": "awful", "model": "sentiment"}, {"text": "great"}]}
        )
        assert batch.status_code == 200 and len(batch.json()["results"]) == 2, batch.text

        # Seed 004 on the tabular deployment, with a forged X-Tenant-ID that changes nothing.
        forged = {"X-Tenant-ID": "rival"}
        table = f"/inference/{tabular['id']}"
        versions = [v for v in train_versions() if v.model_type == "logistic_regression"]
        register_tabular_versions(api, table, versions, forged)
        sample = {"input_data": versions[0].sample}
        predictions = [
            api.post(f"{table}/{path}", json=sample, headers=forged)
            for path in ("predict", "predict/logistic_regression", "predict/logistic_regression/v1")
        ]
        assert [p.status_code for p in predictions] == [200] * 3, [p.text for p in predictions]
        assert [p.json()["version"] for p in predictions] == ["v2", "v2", "v1"]
        logs = api.get(f"{table}/logs", params={"n_limit": 10}, headers=forged).json()
        assert logs["count"] == 3 and {e["tenant"] for e in logs["logs"]} == {"demo"}, logs

        # Another tenant: 404 for every one of these, its own forged header included.
        rival = _rival(platform)
        denied = [
            rival.post(f"{seed}/infer", json={"text": "x"}),
            rival.post(f"{seed}/infer/batch", json={"requests": [{"text": "x"}]}),
            rival.post(f"{table}/predict", json=sample, headers={"X-Tenant-ID": "demo"}),
            rival.get(f"{table}/logs", headers={"X-Tenant-ID": "demo"}),
            rival.delete(f"{table}/delete-models", headers={"X-Tenant-ID": "demo"}),
            rival.post("/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": "x"}),
        ]
        assert [r.status_code for r in denied] == [404] * len(denied), [r.text for r in denied]

        deleted = api.delete(f"{table}/delete-models", headers=forged)
        assert deleted.status_code == 200 and deleted.json()["tenant"] == "demo", deleted.text
        assert api.post(f"{table}/predict/logistic_regression/v1", json=sample).status_code == 410

        usage = {r["model"]: r for r in api.get("/v1/usage").json()["data"]}
        assert usage[EMBEDDING_MODEL]["requests"] >= 3 and usage[EMBEDDING_MODEL]["prompt_tokens"] > 0
    finally:
        for d in made:
            api.delete(f"/v1/deployments/{d['id']}")


def _rival(platform: Platform) -> httpx.Client:
    admin = httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {platform.admin_key}"})
    admin.post("/v1/tenants", json={"client_code": "rival"})  # 409 when a test before made it: the key is what counts
    key = admin.post("/v1/tenants/rival/api_keys", json={"name": "e2e"}).json()["key"]
    return _api(platform, key)
