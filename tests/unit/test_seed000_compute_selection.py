"""Seed 000 (issue #17): RAY_HEAD_ADDRESS alone selects the Ray backend; FINETUNING_SCRIPT_PATH names the entrypoint;
an unreachable Ray head gives seed 001's cluster-status stub with the reason."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from functions.compute.ray import RayBackend
from functions.core.settings import Settings
from tests.helpers.specs import recording_ray_head, training_spec


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COMPUTE_BACKEND", "RAY_HEAD_ADDRESS", "FINETUNING_SCRIPT_PATH"):
        monkeypatch.delenv(name, raising=False)


def test_ray_head_address_alone_selects_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).compute_backend == "local"
    monkeypatch.setenv("RAY_HEAD_ADDRESS", "http://ray-head:8265")
    assert Settings(_env_file=None).compute_backend == "ray"
    monkeypatch.setenv("COMPUTE_BACKEND", "local")  # an explicit choice wins over the address
    assert Settings(_env_file=None).compute_backend == "local"
    monkeypatch.setenv("RAY_HEAD_ADDRESS", "")
    monkeypatch.delenv("COMPUTE_BACKEND")
    assert Settings(_env_file=None).compute_backend == "local"


def test_finetuning_script_path_is_the_ray_entrypoint(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).finetuning_script_path == "ministudio-train"
    head, posted = recording_ray_head("run-1")
    monkeypatch.setenv("FINETUNING_SCRIPT_PATH", "python /opt/fine_tuning_script.py")
    settings = Settings(_env_file=None, ray_head_address="http://127.0.0.1:8265")
    backend = RayBackend(settings, transport=head)
    assert backend.command == ["python", "/opt/fine_tuning_script.py"]
    backend.submit("run-1", training_spec("run-1"))
    assert posted[0]["entrypoint"].startswith("python /opt/fine_tuning_script.py --spec-json ")
    monkeypatch.delenv("FINETUNING_SCRIPT_PATH")
    assert RayBackend(Settings(_env_file=None, ray_head_address="h:8265")).command == ["ministudio-train"]


def test_unreachable_ray_head_gives_the_seed_stub_with_the_reason() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(_env_file=None, ray_head_address=f"http://127.0.0.1:{port}", ray_request_timeout_seconds=2)
    status = RayBackend(settings).cluster_status()
    assert status["available"] is False and status["backend"] == "ray"
    assert "RAY_HEAD_ADDRESS" in status["reason"] and str(port) in status["reason"]
    assert status["runs"] == {"running": [], "queued": []} and status["cpu"]["total"] is None


def test_the_local_backend_runs_the_finetuning_script_path(tmp_path: Path) -> None:
    from functions.compute.local import LocalBackend

    backend = LocalBackend(
        Settings(finetuning_script_path="/usr/bin/env python3 /opt/fine_tuning_script.py"), runs_dir=tmp_path
    )
    try:
        assert backend.command == ["/usr/bin/env", "python3", "/opt/fine_tuning_script.py"]
    finally:
        backend.close()
