"""Seed 002's MLflow registry, round trip against a real `mlflow server` (SQLite backend, proxied artifacts) on
127.0.0.1: the trainer trains a LoRA adapter on a tiny random Llama and registers it; the server loads MODEL_NAME by
stage or alias, serves it as base + that adapter, and shows the registry's metadata on /info."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from functions.local.procs import free_port
from tests.helpers.datasets import chat_rows, read_json, write_jsonl
from tests.helpers.mlflow_server import MLFLOW_QUIET_ENV, mlflow_server
from tests.helpers.tiny_models import build_model_dir

from ministudio_serve.app import create_app
from ministudio_serve.settings import ServeSettings

pytest.importorskip("mlflow")
pytest.importorskip("ministudio_train")
PROMPTS = ["say red blue", "say one two three", "say green", "say black white six"]


@pytest.fixture(scope="module", autouse=True)
def _quiet_mlflow() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in MLFLOW_QUIET_ENV.items():
            mp.setenv(name, value)
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(build_model_dir(tmp_path_factory.mktemp("tiny-base")))


def _train_and_register(base: Path, out: Path, uri: str, *registry_flags: str) -> dict[str, Any]:
    from ministudio_train.cli import EXIT_OK, main

    train = write_jsonl(out.parent / f"{out.name}.jsonl", chat_rows(16))
    args = ["--model", str(base), "--training-file", str(train), "--output", str(out), "--job-id", f"ftjob-{out.name}",
            "--n-epochs", "4", "--batch-size", "4", "--learning-rate-multiplier", "10", "--validation-split", "0",
            "--prompt-loss-weight", "0", "--mlflow-tracking-uri", uri, *registry_flags]  # fmt: skip
    assert main(args) == EXIT_OK
    result = read_json(out / "result.json")
    assert "error" not in result["registry"], result["registry"]
    return dict(result["registry"])


@pytest.fixture(scope="module")
def versions(base_dir: Path, tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Version 1 in Production; version 2 (newer) holds the `champion` alias and no stage."""
    root = tmp_path_factory.mktemp("runs")
    first = _train_and_register(base_dir, root / "v1", tracking_uri, "--register-stage", "Production")
    second = _train_and_register(base_dir, root / "v2", tracking_uri, "--register-alias", "champion")
    assert (first["version"], second["version"]) == ("1", "2")
    return {"production": first, "champion": second}


def _serve(tmp_path: Path, **overrides: Any) -> TestClient:
    values: dict[str, Any] = {"request_log": tmp_path / "requests.sqlite", "adapter_cache": tmp_path / "adapters",
                              "preload_task_models": False, "torch_threads": 1, "batch_timeout_ms": 0}  # fmt: skip
    return TestClient(create_app(ServeSettings(**{**values, **overrides})), raise_server_exceptions=False)


def _wait_loaded(client: TestClient, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = client.get("/health").json()
        if health["model_status"] != "loading":
            return dict(health)
        time.sleep(0.2)
    raise AssertionError("the model did not finish loading")


def _reference(base: Path, adapter: Path | None, prompt: str, n: int) -> str:
    """Greedy text from transformers (+ peft) directly: what base + adapter must say."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model: Any = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        out = model.eval().generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return str(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


def test_server_serves_the_production_version_as_base_plus_its_adapter(
    tracking_uri: str, versions: dict[str, dict], base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Given the seed's variables only (MODEL_NAME defaults to custom-llm, the stage to Production)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    for name in ("MODEL_NAME", "MODEL_STAGE", "MODEL_ALIAS"):
        monkeypatch.delenv(name, raising=False)
    with _serve(tmp_path) as client:
        assert _wait_loaded(client)["model_status"] == "loaded"

        # Then /info shows the registry's metadata of version 1
        info = client.get("/info").json()
        production = versions["production"]
        assert (info["model_name"], info["model_version"]) == ("custom-llm", "1")
        reg = info["registry"]
        assert (reg["name"], reg["version"], reg["stage"], reg["selected_by"]) == (
            "custom-llm",
            "1",
            "Production",
            {"stage": "Production"},
        )
        assert reg["run_id"] == production["run_id"] and reg["base_model"] == str(base_dir)
        assert reg["tracking_uri"] == tracking_uri and reg["params"]["base_model"] == str(base_dir)
        assert {"final_loss", "trained_tokens", "loss"} <= set(reg["metrics"])

        # And /predict answers as custom-llm v1, generating what base + that adapter generate
        adapter = Path(tmp_path / "v1-adapter")
        import mlflow

        adapter = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=production["source"], dst_path=str(adapter), tracking_uri=tracking_uri
            )
        )
        served, plain, expected, base_only = [], [], [], []
        for prompt in PROMPTS:
            reply = client.post("/predict", json={"prompt": prompt, "max_length": 6, "temperature": 0})
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert (body["model_name"], body["model_version"]) == ("custom-llm", "1")
            served.append(body["generated_text"])
            base_reply = client.post(
                "/predict", json={"prompt": prompt, "max_length": 6, "temperature": 0, "model": str(base_dir)}
            )
            plain.append(base_reply.json()["generated_text"])
            expected.append(_reference(base_dir, adapter, prompt, 6))
            base_only.append(_reference(base_dir, None, prompt, 6))
        assert served == expected
        assert plain == base_only  # the base's own id still reaches the plain base
        assert served != plain, "the trained adapter changed nothing: the test could not tell base from base+adapter"
        models = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert models[0] == "custom-llm"


def test_alias_wins_over_stage(tracking_uri: str, versions: dict[str, dict], tmp_path: Path):
    with _serve(tmp_path, mlflow_tracking_uri=tracking_uri, model_alias="champion") as client:
        assert _wait_loaded(client)["model_status"] == "loaded"
        reg = client.get("/info").json()["registry"]
        assert (reg["version"], reg["selected_by"], reg["aliases"]) == ("2", {"alias": "champion"}, ["champion"])
        assert reg["run_id"] == versions["champion"]["run_id"]
        reply = client.post("/predict", json={"prompt": "say red", "max_length": 3})
        assert reply.json()["model_version"] == "2"


def test_latest_stage_takes_the_newest_version(tracking_uri: str, versions: dict[str, dict], tmp_path: Path):
    with _serve(tmp_path, mlflow_tracking_uri=tracking_uri, model_stage="latest") as client:
        _wait_loaded(client)
        assert client.get("/info").json()["registry"]["version"] == "2"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": "no-such-model"}, "Model not found in MLflow registry"),
        ({"model_stage": "Staging"}, "Model not found in MLflow registry: no version of 'custom-llm' in stage"),
        ({"model_alias": "nobody"}, "Model not found in MLflow registry: no version of 'custom-llm' holds alias"),
    ],
)
def test_a_model_the_registry_lacks_is_a_503_that_says_so(
    tracking_uri: str, versions: dict[str, dict], tmp_path: Path, overrides: dict[str, str], message: str
):
    with _serve(tmp_path, mlflow_tracking_uri=tracking_uri, **overrides) as client:
        health = _wait_loaded(client)
        assert health["model_status"] == "failed" and health["status"] == "unhealthy"
        reply = client.post("/predict", json={"prompt": "hi"})
        assert reply.status_code == 503 and reply.json()["error"] == "service_unavailable"
        assert message in reply.json()["message"]


def test_unreachable_registry_is_a_503_naming_the_server(tmp_path: Path):
    dead = f"http://127.0.0.1:{free_port()}"
    with _serve(tmp_path, mlflow_tracking_uri=dead) as client:
        assert _wait_loaded(client)["model_status"] == "failed"
        reply = client.post("/predict", json={"prompt": "hi"})
        assert reply.status_code == 503
        assert f"Connection refused to MLflow server {dead}" in reply.json()["message"]
