"""`/fine_tuning/cluster-status` with RAY_HEAD_ADDRESS (no COMPUTE_BACKEND) at a closed 127.0.0.1 port: seed 001's
`{"ok": true, "status": {...}}` stub with the reason, not a 500 (issue #17)."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from functions.compute import reset_training_backends
from functions.core.settings import Settings


def test_cluster_status_with_ray_unreachable_is_the_seed_stub(
    client: TestClient,
    env: Callable[..., Settings],
    make_tenant: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    acme = make_tenant("acme")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("COMPUTE_BACKEND", raising=False)
    settings = env(RAY_HEAD_ADDRESS=f"http://127.0.0.1:{port}", RAY_REQUEST_TIMEOUT_SECONDS="2")
    assert settings.compute_backend == "ray"
    try:
        response = client.get("/fine_tuning/cluster-status", headers=acme)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["ok"] is True
        status = body["status"]
        assert status["backend"] == "ray" and status["available"] is False
        assert "RAY_HEAD_ADDRESS" in status["reason"] and str(port) in status["reason"]
        assert status["runs"]["running"] == 0 and status["runs"]["own"] == {"running": [], "queued": []}
    finally:
        reset_training_backends()
