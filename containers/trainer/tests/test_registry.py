"""Seed 002's registry against a real `mlflow server` (SQLite backend, proxied artifacts) on 127.0.0.1: a finished
run logs params, per-step metrics and the adapter, and registers a version of MODEL_NAME carrying its base model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from functions.local.procs import free_port
from tests.helpers.datasets import chat_rows, read_json, write_jsonl
from tests.helpers.mlflow_server import MLFLOW_QUIET_ENV, mlflow_server

from ministudio_train.cli import EXIT_OK, main
from ministudio_train.mlflow_registry import RegistrySettings

pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MINISTUDIO_SAGEMAKER_ROOT", "/nonexistent-sagemaker")
    for name in ("MINISTUDIO_JOB_SPEC", "MLFLOW_TRACKING_URI", "MODEL_NAME", "REGISTERED_MODEL_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in MLFLOW_QUIET_ENV.items():
        monkeypatch.setenv(name, value)


def _train(model: Path, tmp: Path, *extra: str) -> dict:
    train = write_jsonl(tmp / "train.jsonl", chat_rows(8))
    out = tmp / "out"
    args = ["--model", str(model), "--training-file", str(train), "--output", str(out), "--job-id", "ftjob-reg",
            "--tenant", "acme", "--n-epochs", "2", "--batch-size", "4", "--validation-split", "0",
            "--log-every", "1", *extra]  # fmt: skip
    assert main(args) == EXIT_OK
    return dict(read_json(out / "result.json"))


def test_finished_run_is_logged_and_registered_with_its_base_model(tiny_model: Path, tmp_path: Path, tracking_uri: str):
    from mlflow import MlflowClient

    # Given a tracking URI, when a job finishes and asks for the Production stage and the `champion` alias
    result = _train(tiny_model, tmp_path, "--mlflow-tracking-uri", tracking_uri, "--register-stage", "Production",
                    "--register-alias", "champion")  # fmt: skip

    # Then result.json names the version, and the registry holds it: the adapter, its base, the run's numbers
    assert result["status"] == "succeeded"
    reg = result["registry"]
    assert (reg["model_name"], reg["stage"], reg["alias"]) == ("custom-llm", "Production", "champion")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = client.get_model_version_by_alias("custom-llm", "champion")
    assert version.version == reg["version"] and version.run_id == reg["run_id"]
    assert version.current_stage == "Production"
    assert version.tags["base_model"] == str(tiny_model) and version.tags["job_id"] == "ftjob-reg"
    run = client.get_run(reg["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["base_model"] == str(tiny_model) and run.data.params["lora_r"] == "8"
    assert run.data.params["n_epochs"] == "2" and run.data.params["tenant"] == "acme"
    assert run.data.metrics["final_loss"] == pytest.approx(result["final_loss"])
    assert run.data.metrics["trained_tokens"] == result["trained_tokens"]
    history = client.get_metric_history(reg["run_id"], "loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]
    listed = {f.path for f in client.list_artifacts(reg["run_id"], "adapter")}
    assert {"adapter/adapter_model.safetensors", "adapter/adapter_config.json"} <= listed
    import mlflow

    fetched = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri("custom-llm", version.version),
            dst_path=str(tmp_path / "fetched"),
            tracking_uri=tracking_uri,
        )
    )
    local = tmp_path / "out" / "adapter" / "adapter_model.safetensors"
    assert (fetched / "adapter_model.safetensors").read_bytes() == local.read_bytes()


def test_model_name_comes_from_the_seed_variable_and_versions_count_up(
    tiny_model: Path, tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("MODEL_NAME", "colour-parrot")

    first = _train(tiny_model, tmp_path / "a")["registry"]
    second = _train(tiny_model, tmp_path / "b")["registry"]

    assert (first["model_name"], first["version"]) == ("colour-parrot", "1")
    assert (second["model_name"], second["version"]) == ("colour-parrot", "2")
    assert second["stage"] is None and second["alias"] is None


def test_unreachable_registry_keeps_the_trained_adapter_and_says_why(tiny_model: Path, tmp_path: Path):
    dead = f"http://127.0.0.1:{free_port()}"

    result = _train(tiny_model, tmp_path, "--mlflow-tracking-uri", dead)

    assert result["status"] == "succeeded" and Path(result["adapter_uri"]).is_dir()
    assert result["registry"]["error"].startswith(f"Connection refused to MLflow server {dead}")
    assert "version" not in result["registry"]


def test_without_a_tracking_uri_nothing_is_logged():
    assert RegistrySettings.resolve({}, {}) is None
    settings = RegistrySettings.resolve({"register_stage": "Staging"}, {"MLFLOW_TRACKING_URI": "http://m:5000"})
    assert settings == RegistrySettings("http://m:5000", "custom-llm", "ministudio", None, "Staging")
