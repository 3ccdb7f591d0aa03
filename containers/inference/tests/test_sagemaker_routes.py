"""SageMaker's /invocations takes every seed route the control plane names in CustomAttributes: each answers in its
own shape (seed 001's infer gets /predict's body, not an OpenAI completion), the tenant is the attribute's, and only
the seeds' model routes can be reached this way."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from ministudio_serve.app import create_app
from ministudio_serve.sagemaker_routes import HEADER, parse
from ministudio_serve.settings import ServeSettings

ATTRIBUTES = HEADER.decode()


def test_a_named_route_answers_in_its_own_shape(client: TestClient) -> None:
    body = {"prompt": "Once upon a time", "max_length": 3}
    predicted = client.post("/invocations", json=body, headers={ATTRIBUTES: "route=/predict;method=POST;tenant=acme"})
    assert predicted.status_code == 200, predicted.text
    assert {"generated_text", "tokens_generated", "model_name"} <= set(predicted.json())
    assert "choices" not in predicted.json()
    info = client.post("/invocations", content=b"", headers={ATTRIBUTES: "route=/info; method=GET"})
    assert info.status_code == 200 and "model_name" in info.text, info.text
    # Without a route, /invocations is OpenAI's chat as before.
    chat = client.post("/invocations", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert chat.json()["object"] == "chat.completion"


def test_only_the_seeds_model_routes_can_be_named(client: TestClient) -> None:
    for attributes in ("route=/v1/load_lora_adapter", "route=/predict;method=PATCH", "route=/predict;tenant=NO PE"):
        refused = client.post("/invocations", json={"lora_name": "x"}, headers={ATTRIBUTES: attributes})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_route", attributes


def test_the_tenant_is_the_attributes_not_a_header_of_the_request(tmp_path: Path) -> None:
    settings = ServeSettings(
        profile="tabular", api_key="k", tabular_store=str(tmp_path / "store"), request_log=tmp_path / "log.sqlite"
    )
    with TestClient(create_app(settings)) as tabular:
        asked = {"Authorization": "Bearer k", "X-Tenant-ID": "other", ATTRIBUTES: "route=/predict;tenant=acme"}
        missing = tabular.post("/invocations", json={"input_data": {"x": 1.0}}, headers=asked)
        assert missing.status_code == 404 and "'acme'" in missing.text, missing.text
        logs = tabular.post("/invocations", headers={**asked, ATTRIBUTES: "route=/logs;method=GET;tenant=acme"})
        assert [e["tenant"] for e in logs.json()["logs"]] == ["acme"]


def test_attributes_parse_as_key_value_pairs() -> None:
    assert parse("route=/predict; method=get;tenant=acme;;") == {"route": "/predict", "method": "get", "tenant": "acme"}
