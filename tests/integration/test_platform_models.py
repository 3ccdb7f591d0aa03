"""Every kind of model through the control plane (issue 17): `/v1/embeddings` in OpenAI's shapes, seeds 002-004's
routes at `/inference/{deployment_id}/...` with the tenant the control plane names. Behind the control plane run real
`ministudio-serve` apps under uvicorn: the `llm` profile around a tiny random Llama (its embedder is the packaged
all-MiniLM-L6-v2) and the `tabular` profile on a directory store; deployment records point at them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from functions.compute.serving import serving_name
from functions.core import ids
from functions.core.model_kinds import EMBEDDING_MODEL, TABULAR_MODEL
from functions.core.models import Deployment, DeploymentStatus, FineTunedModel
from functions.core.settings import Settings
from functions.store.mongo import get_store
from tests.helpers.deployments import register_tabular_versions
from tests.helpers.monitoring import SERVER_KEY, serve, tiny_inference_app
from tests.helpers.openai_schema import assert_openai

Headers = dict[str, str]


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app, _ = tiny_inference_app(tmp_path_factory.mktemp("llm"))
    with serve(app) as served:
        yield served.url


@pytest.fixture(scope="module")
def tabular_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    from ministudio_serve.app import create_app
    from ministudio_serve.settings import ServeSettings

    folder = tmp_path_factory.mktemp("tabular")
    settings = ServeSettings(
        profile="tabular", api_key=SERVER_KEY, tabular_store=str(folder / "store"), request_log=folder / "log.sqlite"
    )
    with serve(create_app(settings)) as served:
        yield served.url, folder / "store"


@pytest.fixture(scope="module")
def versions() -> list[Any]:
    from ministudio_serve.tabular.demo import train_versions

    return [v for v in train_versions() if v.model_type == "logistic_regression"]


@pytest.fixture
def platform(env: Callable[..., Settings]) -> Settings:
    return env(INFERENCE_API_KEY=SERVER_KEY)


def _deployed(tenant: str, model: str, url: str, **fields: Any) -> Deployment:
    deployment_id = ids.new_id("dep-")
    deployment = Deployment(
        id=deployment_id,
        client_code=tenant,
        model=model,
        base_model=fields.pop("base_model", model),
        name=fields.pop("name", serving_name("base", tenant, model, deployment_id)),
        status=DeploymentStatus.ready,
        **{"endpoint": {"kind": "http", "url": url}, **fields},
    )
    get_store().deployments.insert(deployment)
    return deployment


def test_embeddings_go_to_the_callers_deployment_in_openais_shapes_and_count_in_usage(
    client: TestClient, make_tenant: Callable[..., Headers], platform: Settings, llm_server: str
) -> None:
    acme, other = make_tenant("acme"), make_tenant("other")
    _deployed("acme", EMBEDDING_MODEL, llm_server, base_model="HuggingFaceTB/SmolLM2-135M-Instruct")

    # The short name works as OpenAI-style names go; the server answers for the catalogue's name.
    reply = client.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": ["a cat", "a dog"]}, headers=acme)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_openai("CreateEmbeddingResponse", body)
    assert body["model"] == EMBEDDING_MODEL and [len(d["embedding"]) for d in body["data"]] == [384, 384]
    assert reply.headers["x-ministudio-overhead-duration-ms"]
    encoded = client.post(
        "/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": "x", "encoding_format": "base64"}, headers=acme
    )
    assert isinstance(encoded.json()["data"][0]["embedding"], str)  # OpenAI's spec types only the float form

    # Errors in OpenAI's shape, naming the field: the server's (dimensions), the control plane's (input, model).
    for bad, param, status in (
        ({"model": EMBEDDING_MODEL, "input": "x", "dimensions": 12}, "dimensions", 400),
        ({"model": EMBEDDING_MODEL}, "input", 400),
        ({"model": "text-embedding-3-small", "input": "x"}, "model", 404),
    ):
        refused = client.post("/v1/embeddings", json=bad, headers=acme)
        assert refused.status_code == status and refused.json()["error"]["param"] == param, refused.text
        assert_openai("ErrorResponse", refused.json())
    # Another tenant has no deployment of it: acme's is not theirs to use.
    theirs = client.post("/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": "x"}, headers=other)
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "model_not_found"

    usage = {r["model"]: r for r in client.get("/v1/usage", headers=acme).json()["data"]}[EMBEDDING_MODEL]
    assert usage["requests"] == 3 and usage["errors"] == 1 and usage["prompt_tokens"] >= 3
    assert client.get("/v1/usage", headers=other).json()["data"] == []
    assert client.get("/v1/logs", headers=acme).json()["data"][0]["route"] == "/v1/embeddings"


def test_llm_seed_routes_reach_only_the_callers_deployment(
    client: TestClient, make_tenant: Callable[..., Headers], platform: Settings, llm_server: str
) -> None:
    acme, other = make_tenant("acme"), make_tenant("other")
    mine = _deployed("acme", "HuggingFaceTB/SmolLM2-135M-Instruct", llm_server)
    base = f"/inference/{mine.id}"

    models = client.get(f"{base}/models", headers=acme)
    assert models.status_code == 200 and {"summarizer", "sentiment"} <= {m["name"] for m in models.json()["models"]}
    infer = client.post(f"{base}/infer", json={"text": "What a lovely day!", "model": "sentiment"}, headers=acme)
    assert infer.status_code == 200 and infer.json()["success"] and infer.json()["model_used"], infer.text
    batch = client.post(
        f"{base}/infer/batch", json={"requests": [{"text": "good", "model": "sentiment"}] * 2}, headers=acme
    )
    assert batch.status_code == 200 and len(batch.json()["results"]) == 2, batch.text
    predicted = client.post(f"{base}/predict/batch", json={"prompts": ["Hi"], "max_length": 2}, headers=acme)
    assert predicted.status_code == 200 and predicted.json()["batch_size"] == 1, predicted.text
    assert client.get(f"{base}/info", headers=acme).status_code == 200
    assert client.get(f"{base}/status", headers=acme).status_code == 200
    # The seed's error shape comes back from the server (seed 003's body), with the caller's request id.
    empty = client.post(f"{base}/infer", json={"text": ""}, headers={**acme, "X-Request-ID": "req-seed-1"})
    assert empty.status_code == 400 and empty.headers["x-request-id"] == "req-seed-1", empty.text
    assert empty.json()["request_id"] == "req-seed-1" and "text" in empty.json()["message"], empty.text

    # Not a seed route of the profile, another tenant's id, another tenant's adapter named in the body: 404.
    assert client.post(f"{base}/v1/load_lora_adapter", json={}, headers=acme).status_code == 404
    assert client.get(f"{base}/logs", headers=acme).status_code == 404  # seed 004's: a tabular deployment's
    for method, path in (("GET", "models"), ("POST", "infer"), ("GET", "info")):
        assert client.request(method, f"{base}/{path}", json={"text": "x"}, headers=other).status_code == 404
    stolen = {"prompt": "Hi", "model": "ft:HuggingFaceTB/SmolLM2-135M-Instruct:other:s:ftjob-x"}
    refused = client.post(f"{base}/predict", json=stolen, headers=acme)
    assert refused.status_code == 404 and refused.json()["ok"] is False

    # An adapter riding on a shared server has no seed routes of its own: that server's /info is its host's.
    rider = _deployed("acme", "ft:x:acme:s:ftjob-1", llm_server, dedicated=False, kind="fine_tuned")
    assert client.get(f"/inference/{rider.id}/info", headers=acme).status_code == 409
    logged = {e["route"] for e in client.get("/v1/logs", params={"limit": 50}, headers=acme).json()["data"]}
    assert {"/models", "/infer", "/infer/batch", "/predict/batch", "/info"} <= logged


def test_tabular_deployment_registers_predicts_logs_and_deletes_per_tenant_whatever_x_tenant_id_says(
    client: TestClient,
    make_tenant: Callable[..., Headers],
    platform: Settings,
    tabular_server: tuple[str, Path],
    versions: list[Any],
) -> None:
    url, store = tabular_server
    acme, other = make_tenant("acme"), make_tenant("other")
    mine = _deployed("acme", TABULAR_MODEL, url, profile="tabular")
    theirs = _deployed("other", TABULAR_MODEL, url, profile="tabular")
    forged = {**acme, "X-Tenant-ID": "other"}  # a caller's header changes nothing: the control plane names the tenant
    base = f"/inference/{mine.id}"

    register_tabular_versions(client, base, versions, forged)
    assert (store / "tabular" / "acme").is_dir() and not (store / "tabular" / "other").exists()
    sample = {"input_data": versions[0].sample}
    active = client.post(f"{base}/predict", json=sample, headers=forged)
    assert active.status_code == 200 and active.json()["version"] == "v2", active.text
    typed = client.post(f"{base}/predict/logistic_regression", json=sample, headers=acme).json()
    exact = client.post(f"{base}/predict/logistic_regression/v1", json=sample, headers=acme).json()
    assert typed["version"] == "v2" and exact["version"] == "v1" and "prediction" in exact
    bad = client.post(f"{base}/predict", json={"input_data": {"mean radius": "big"}}, headers=acme)
    assert bad.status_code == 422 and "mean radius" in bad.text
    logs = client.get(f"{base}/logs", params={"n_limit": 10}, headers=forged).json()
    assert logs["count"] >= 3 and all(e["tenant"] == "acme" for e in logs["logs"]), logs

    # The other tenant: 404 on acme's deployment; on its own, none of acme's models, whatever header it forges.
    for method, path in (("POST", "predict"), ("GET", "logs"), ("DELETE", "delete-models"), ("GET", "models")):
        assert client.request(method, f"{base}/{path}", json=sample, headers=other).status_code == 404
    own = client.post(f"/inference/{theirs.id}/predict", json=sample, headers={**other, "X-Tenant-ID": "acme"})
    assert own.status_code == 404, own.text  # no active model of its own: acme's stays acme's
    their_logs = client.get(f"/inference/{theirs.id}/logs", headers=other).json()["logs"]
    assert their_logs and all(e["tenant"] == "other" for e in their_logs), their_logs  # its own failed predict only

    deleted = client.delete(f"{base}/delete-models", headers=forged)
    assert deleted.status_code == 200 and deleted.json()["tenant"] == "acme", deleted.text
    gone = client.post(f"{base}/predict/logistic_regression/v1", json=sample, headers=acme)
    assert gone.status_code == 410, gone.text
    # The tabular server itself refuses a caller without the server key (only the control plane holds it).
    assert httpx.get(f"{url}/logs", headers={"X-Tenant-ID": "acme"}).status_code == 401


def test_on_sagemaker_seed_routes_keep_their_shapes(
    client: TestClient, make_tenant: Callable[..., Headers], platform: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    import boto3
    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    from functions.compute import sagemaker_invoke

    acme = make_tenant("acme")
    model = "HuggingFaceTB/SmolLM2-135M-Instruct"
    endpoint = {"kind": "sagemaker", "target": "vllm-base-smollm2", "component": "vllm-base-smollm2-base"}
    mine = _deployed("acme", model, "", endpoint=endpoint)
    runtime = boto3.client(
        "sagemaker-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    monkeypatch.setattr(sagemaker_invoke, "_runtime_client", lambda settings: runtime)
    predicted = {"generated_text": " there", "prompt": "Hi", "tokens_generated": 1, "model_name": model}
    info = {"model_name": model, "adapters": ["ft:b:acme:s:j", "ft:b:globex:s:j"]}

    def answers(body: dict[str, Any], route: str, method: str, sent: bytes) -> None:
        data = json.dumps(body).encode()
        stub.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentType": "application/json"},
            {
                "EndpointName": endpoint["target"],
                "InferenceComponentName": endpoint["component"],
                "Body": sent,
                "ContentType": "application/json",
                "Accept": "application/json",
                # The server turns /invocations into this route (ministudio_serve/sagemaker_routes.py).
                "CustomAttributes": f"route={route};method={method};tenant=acme",
            },
        )

    with Stubber(runtime) as stub:
        answers(predicted, "/predict", "POST", json.dumps({"prompt": "Hi", "max_length": 2, "model": model}).encode())
        answers(info, "/info", "GET", b"")
        infer = client.post(f"/inference/infer/{model}", json={"prompt": "Hi", "max_length": 2}, headers=acme)
        assert infer.status_code == 200 and infer.json() == predicted, infer.text  # /predict's body, as it came
        shown = client.get(f"/inference/{mine.id}/info", headers={**acme, "X-Tenant-ID": "globex"})
        assert shown.status_code == 200 and shown.json()["adapters"] == ["ft:b:acme:s:j", "<another model>"]
        stub.assert_no_pending_responses()


def test_a_seed_fine_tuned_deploy_on_another_tenants_server_never_shows_that_tenants_code(
    client: TestClient, make_tenant: Callable[..., Headers], platform: Settings
) -> None:
    acme, _ = make_tenant("acme"), make_tenant("globex")
    base = "HuggingFaceTB/SmolLM2-135M-Instruct"
    for code in ("acme", "globex"):
        get_store().models.add(
            FineTunedModel(
                id=f"ft:{base}:{code}:s:ftjob-{code}",
                client_code=code,
                base_model=base,
                job_id=f"ftjob-{code}",
                adapter_uri=f"s3://b/artifacts/{code}/ftjob-{code}/adapter/",
            )
        )
    # globex's own fine-tuned server, ready: an adapter of the same base rides on it.
    host_name = serving_name("ft", "globex", base, "dep-globex")
    _deployed("globex", f"ft:{base}:globex:s:ftjob-globex", "http://127.0.0.1:9", base_model=base, name=host_name)

    body = {"base_model": base, "fine_tuned_weights_path": f"ft:{base}:acme:s:ftjob-acme"}
    reply = client.post("/inference/deploy/fine_tuned", json=body, headers=acme)
    assert reply.status_code == 200, reply.text
    assert "globex" not in reply.text and reply.json()["deployment"].startswith("vllm-ft-acme-"), reply.text
    record = get_store().deployments.get(reply.json()["deployment_id"])
    assert record is not None and record.name == host_name  # it does ride on globex's server
    assert "globex" not in client.get(f"/v1/deployments/{record.id}", headers=acme).text
