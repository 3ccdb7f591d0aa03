"""Fixtures shared by the integration tests (the session's moto, Redis and API fixtures are in tests/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.compute import reset_training_backends
from functions.core import names
from functions.core.settings import Settings
from tests.conftest import _drainer
from tests.helpers.jobs import Jobs
from tests.helpers.tiny_models import tiny_serving_model


@pytest.fixture
def jobs(client: TestClient, ingest: Callable[[], int], s3: Any, status_worker: Callable[[], int]) -> Jobs:
    return Jobs(client, ingest, s3, status_worker)


@pytest.fixture
def dfs(env: Callable[..., Settings], tmp_path: Path) -> Path:
    """A DFS folder (seed 000's DFS_BASE_PATH) for this test, set in the settings."""
    env(DFS_BASE_PATH=str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny serving model (tests.helpers.tiny_models), built once per session."""
    return tiny_serving_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def serving(
    env: Callable[..., Settings], tiny_dir: Path, tmp_path: Path, resources: Any
) -> Iterator[Callable[..., int]]:
    """Local serving of the tiny model; call it (with settings to change first) to drain the dispatch queue."""
    from functions.workers import dispatch as worker

    base = {
        "LOCAL_SERVING_DIR": str(tmp_path / "serving"),
        "INFERENCE_API_KEY": "server-key",
        "BASE_MODELS": json.dumps([str(tiny_dir)]),
        "LOCAL_SERVING_THREADS": "1",
    }
    env(**base)
    drain = _drainer(resources, names.DISPATCH_QUEUE, worker.handler)

    def run(**settings: str) -> int:
        if settings:
            env(**base, **settings)
        return drain()

    yield run
    reset_training_backends()  # stops every server this test started
