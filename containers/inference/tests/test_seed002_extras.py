"""Seed 002's remaining pieces: Trusted Hosts (002.F13), CUDA_VISIBLE_DEVICES (002.F19), serving_config.yaml
(002.F21), the `api.log` file (002.F26) and the Kubernetes example (002.F27)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import kubernetes_validate
import pytest
import torch
import yaml
from fastapi.testclient import TestClient
from pydantic import ValidationError
from tests.helpers.waiting import wait_for_health

from ministudio_serve.app import create_app
from ministudio_serve.cli import parse
from ministudio_serve.devices import parse_visible_devices, visible_cuda_devices
from ministudio_serve.settings import SERVING_CONFIG_KEYS, ServeSettings, ServingConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = ROOT / "configs" / "serving_config.yaml"
MANIFEST = ROOT / "deploy" / "custom-llm-api.yaml"
KUBERNETES_VERSION = "1.35"  # as tests/unit/test_compute_eks_manifests.py (infra/cdk/stacks/compute_eks.py)
SEED_ERROR_KEYS = {"error", "message", "details", "timestamp", "request_id"}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No variable any setting reads, so only what a test sets counts."""
    for field in ServeSettings.model_fields.values():
        for alias in getattr(field.validation_alias, "choices", []):
            monkeypatch.delenv(str(alias), raising=False)
    return monkeypatch


# --- 002.F13 Trusted Hosts -----------------------------------------------------------------------------------------


def test_any_host_is_answered_by_default(client):
    assert ServeSettings().trusted_hosts == ["*"]
    assert client.get("/status", headers={"host": "anything.example:1234"}).status_code == 200


def test_a_host_outside_trusted_hosts_is_400_in_the_seed_shape(settings_factory, make_engine):
    app = create_app(settings_factory(trusted_hosts=["api.example.com", "*.svc.cluster.local"]), engine=make_engine())
    with TestClient(app, base_url="http://api.example.com") as c:
        assert c.get("/status").status_code == 200
        assert c.get("/status", headers={"host": "API.example.com:8000"}).status_code == 200
        assert c.get("/status", headers={"host": "custom-llm-api.default.svc.cluster.local"}).status_code == 200

        reply = c.post("/predict", json={"prompt": "hi"}, headers={"host": "evil.example", "x-request-id": "r-1"})
        assert reply.status_code == 400
        body = reply.json()
        assert set(body) == SEED_ERROR_KEYS
        assert (body["error"], body["details"], body["request_id"]) == (
            "validation_error",
            {"code": "invalid_host"},
            "r-1",
        )
        assert "evil.example" in body["message"] and reply.headers["x-request-id"] == "r-1"
        datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
        # The parent domain of a `*.` pattern is not one of its subdomains
        assert c.get("/status", headers={"host": "svc.cluster.local"}).status_code == 400
        # On /v1 the error keeps OpenAI's shape, as every error there does
        openai = c.get("/v1/models", headers={"host": "evil.example"})
        assert openai.status_code == 400 and openai.json()["error"]["code"] == "invalid_host"


def test_the_host_is_checked_before_the_key(settings_factory, make_engine):
    app = create_app(settings_factory(trusted_hosts=["api.example.com"], api_key="k"), engine=make_engine())
    with TestClient(app, base_url="http://evil.example") as c:
        assert c.post("/predict", json={"prompt": "hi"}).status_code == 400


def test_probes_answer_whatever_the_host(settings_factory, make_engine):
    # The kubelet sends the pod's IP and port as Host; SageMaker's /ping its own address.
    app = create_app(settings_factory(trusted_hosts=["api.example.com"]), engine=make_engine())
    with TestClient(app, base_url="http://10.1.2.3:8000") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/ready").status_code == 200
        assert c.get("/ping").status_code == 200
        assert c.get("/info").status_code == 400


def test_trusted_hosts_from_env_and_flags(clean_env):
    clean_env.setenv("TRUSTED_HOSTS", '["api.example.com", "localhost"]')
    assert parse([]).trusted_hosts == ["api.example.com", "localhost"]
    assert parse(["--trusted-hosts", "a.example", "*.b.example"]).trusted_hosts == ["a.example", "*.b.example"]
    with pytest.raises(ValidationError, match="leading"):
        ServeSettings(trusted_hosts=["api.*.example.com"])


# --- 002.F21 serving_config.yaml -----------------------------------------------------------------------------------


def test_the_shipped_config_has_the_seeds_keys_and_values(clean_env):
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    assert {f"{section}.{key}" for section, body in data.items() for key in body} == set(SERVING_CONFIG_KEYS)
    s = ServeSettings(serving_config=EXAMPLE_CONFIG)
    assert (s.host, s.port, s.api_workers) == ("0.0.0.0", 8000, 1)
    assert (s.max_model_len, s.default_max_tokens, s.max_batch_size) == (2048, 100, 4)
    assert (s.mlflow_tracking_uri, s.model, s.model_name, s.model_stage) == (
        "http://localhost:5000",
        "custom-llm",
        "custom-llm",
        "Production",
    )


def test_flags_beat_env_which_beats_the_file_which_beats_defaults(clean_env, tmp_path):
    config = tmp_path / "serving_config.yaml"
    config.write_text("api:\n  port: 8100\n  workers: 2\nmodel:\n  batch_size: 4\n")
    from_file = parse(["--config", str(config)])
    assert (from_file.port, from_file.api_workers, from_file.max_batch_size) == (8100, 2, 4)
    assert from_file.host == "127.0.0.1" and from_file.default_max_tokens == 256  # defaults where the file is silent

    clean_env.setenv("API_PORT", "8200")
    clean_env.setenv("MAX_BATCH_SIZE", "6")
    from_env = parse(["--config", str(config)])
    assert (from_env.port, from_env.api_workers, from_env.max_batch_size) == (8200, 2, 6)

    flags = parse(["--config", str(config), "--port", "8300", "--api-workers", "3"])
    assert (flags.port, flags.api_workers, flags.max_batch_size) == (8300, 3, 6)

    clean_env.setenv("SERVING_CONFIG", str(config))  # the environment names the file as well
    assert (parse([]).api_workers, parse([]).port) == (2, 8200)
    clean_env.delenv("SERVING_CONFIG")
    assert parse([]).api_workers == 1  # no file: defaults


def test_an_unknown_key_is_an_error_naming_it(clean_env, tmp_path, capsys):
    config = tmp_path / "serving_config.yaml"
    config.write_text("api:\n  port: 8000\n  hots: 0.0.0.0\n")
    with pytest.raises(ServingConfigError, match=r"unknown key `api\.hots`"):
        ServeSettings(serving_config=config)
    with pytest.raises(SystemExit) as exited:
        parse(["--config", str(config)])
    assert exited.value.code == 2 and "api.hots" in capsys.readouterr().err

    config.write_text("server:\n  port: 8000\n")
    with pytest.raises(ServingConfigError, match="unknown key `server`"):
        ServeSettings(serving_config=config)
    with pytest.raises(ServingConfigError, match="cannot read"):
        ServeSettings(serving_config=tmp_path / "missing.yaml")
    config.write_text("api:\n  port: not-a-port\n")
    with pytest.raises(ValidationError, match="port"):
        ServeSettings(serving_config=config)


# --- 002.F26 api.log -----------------------------------------------------------------------------------------------


def test_log_file_gets_the_servers_logs_and_request_lines(tmp_path: Path):
    # A model that cannot load keeps the start quick; the server still answers /health (503, "failed").
    from functions.local.procs import free_port

    port = free_port()
    log_file = tmp_path / "logs" / "api.log"
    aliases = {str(a) for f in ServeSettings.model_fields.values() for a in getattr(f.validation_alias, "choices", [])}
    env = {k: v for k, v in os.environ.items() if k not in aliases}
    env.update({"API_PORT": str(port), "MODEL_NAME": str(tmp_path / "no-model"), "LOG_FILE": str(log_file),
           "PRELOAD_TASK_MODELS": "false", "REQUEST_LOG_PATH": str(tmp_path / "log.sqlite"),
           "HF_HUB_OFFLINE": "1", "ALLOW_NO_API_KEY": "1"})  # fmt: skip
    stderr = tmp_path / "stderr.log"
    with stderr.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ministudio_serve.cli"], env=env, stdout=out, stderr=out)
    try:
        wait_for_health(port, proc, stderr)
        for _ in range(50):  # the access line is written once the response is sent
            if '"GET /health HTTP/1.1"' in log_file.read_text():
                break
            time.sleep(0.1)
        text = log_file.read_text()
        assert '"GET /health HTTP/1.1"' in text, text[-2000:]
        assert "Application startup complete" in text
        # Same format on stderr as in the file: "time LEVEL logger message"
        line = next(li for li in text.splitlines() if "GET /health" in li)
        assert " INFO uvicorn.access " in line and line in stderr.read_text()
    finally:
        proc.terminate()
        proc.wait(30)


def test_no_log_file_by_default(clean_env):
    assert parse([]).log_file is None
    assert parse(["--log-file", "api.log"]).log_file == Path("api.log")


# --- 002.F19 CUDA_VISIBLE_DEVICES ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        (None, None),  # unset: every device
        ("0", ["0"]),  # the seed's default
        ("1,0", ["1", "0"]),
        (" 2 , 3 ", ["2", "3"]),
        ("0,1,-1,2", ["0", "1"]),  # a negative entry ends the list
        ("-1", []),
        ("", []),
        ("1gpu,2", ["1", "2"]),  # leading digits, as CUDA's strtoul
        ("0,0", []),  # a repeated id hides every device
        ("GPU-8932f937-d72c-4106,GPU-aa11", ["GPU-8932f937-d72c-4106", "GPU-aa11"]),
        ("MIG-abc,1", ["MIG-abc"]),
    ],
)
def test_cuda_visible_devices_parsing(value, ids):
    assert parse_visible_devices(value) == ids


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU answer")
def test_info_reports_no_cuda_devices_without_cuda(client):
    assert client.get("/info").json()["cuda_devices"] is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_info_reports_the_visible_cuda_devices(client):
    devices = client.get("/info").json()["cuda_devices"]
    named = parse_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"))
    assert [d["index"] for d in devices] == list(range(torch.cuda.device_count()))
    assert [d["id"] for d in devices] == (named or [str(i) for i in range(len(devices))])[: len(devices)]
    assert devices == visible_cuda_devices()


# --- 002.F27 Kubernetes example ------------------------------------------------------------------------------------


def test_kubernetes_example_is_valid_and_has_the_seeds_names():
    docs = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    kinds = {doc["kind"]: doc for doc in docs}
    assert set(kinds) == {"Deployment", "Service"}
    deployment, service = kinds["Deployment"], kinds["Service"]
    assert deployment["metadata"]["name"] == "custom-llm-api"
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["selector"]["matchLabels"] == {"app": "custom-llm-api"}
    assert spec["template"]["metadata"]["labels"]["app"] == "custom-llm-api"
    (container,) = spec["template"]["spec"]["containers"]
    assert (container["name"], container["image"]) == ("api", "custom-llm-api:latest")
    assert [p["containerPort"] for p in container["ports"]] == [8000]
    env = {e["name"]: e for e in container["env"]}
    assert env["API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "api-secret", "key": "api-key"}
    assert env["API_PORT"]["value"] == "8000" and env["API_HOST"]["value"] == "0.0.0.0"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8000}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": 8000}
    # The server listens where the probes look: the container's settings give that port
    server = ServeSettings.model_validate({e["name"]: e["value"] for e in container["env"] if "value" in e})
    assert (server.host, server.port) == ("0.0.0.0", 8000)
    assert service["metadata"]["name"] == "custom-llm-api"
    assert service["spec"]["selector"] == {"app": "custom-llm-api"}
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [8000]


def test_a_wrong_field_in_the_example_would_be_refused():
    (deployment, _) = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    deployment["spec"]["template"]["spec"]["containers"][0]["port"] = 8000  # misspelt `ports`
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
