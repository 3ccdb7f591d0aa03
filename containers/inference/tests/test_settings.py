"""CLI flags beat the environment, the environment beats defaults, and the generic PORT is never read."""

from __future__ import annotations

from ministudio_serve.cli import parse


def test_flags_override_environment_and_port_is_never_inherited(monkeypatch):
    monkeypatch.setenv("PORT", "9999")
    monkeypatch.setenv("API_PORT", "8100")
    monkeypatch.setenv("MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("BATCH_TIMEOUT_MS", "25")
    monkeypatch.setenv("API_KEY", "from-env")
    from_env = parse([])
    assert (from_env.port, from_env.max_batch_size, from_env.batch_timeout_ms, from_env.api_key) == (
        8100,
        4,
        25,
        "from-env",
    )
    flags = parse(
        [
            "--port",
            "8200",
            "--max-batch-size",
            "16",
            "--served-model-name",
            "smol",
            "--engine",
            "vllm",
            "--adapter-source",
            "s3://b/artifacts/{tenant}/{job_id}/adapter/",
        ]
    )
    assert (flags.port, flags.max_batch_size, flags.model_name, flags.engine) == (8200, 16, "smol", "vllm")
    assert flags.adapter_source == "s3://b/artifacts/{tenant}/{job_id}/adapter/"


def test_defaults_follow_the_seeds(monkeypatch):
    for name in ("PORT", "API_PORT", "MAX_BATCH_SIZE", "BATCH_TIMEOUT_MS", "API_KEY", "API_HOST", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORT", "9999")
    settings = parse([])
    assert (settings.port, settings.max_batch_size, settings.batch_timeout_ms) == (8000, 8, 100.0)
    assert settings.api_key is None and settings.log_level == "INFO"


def test_sagemaker_serve_argument_is_accepted():
    assert parse(["serve", "--port", "8080"]).port == 8080
