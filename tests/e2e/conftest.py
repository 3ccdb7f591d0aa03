"""One local platform for the e2e tests, started as `make run` starts it: its own moto server and redis-server,
the API under uvicorn, SQS pollers, the reconciler schedule and the local compute backend."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from openai import OpenAI

from functions.core.settings import get_settings
from functions.local.procs import free_port
from functions.local.runtime import Platform

# Settings other test modules may have put in the environment: the platform must bring up its own.
ISOLATE = (
    "AWS_ENDPOINT_URL",
    "REDIS_URL",
    "ADMIN_API_KEY",
    "INGEST_QUEUE_URL",
    "DISPATCH_QUEUE_URL",
    "STATUS_QUEUE_URL",
    "DATABASE_NAME",
    "DFS_BASE_PATH",
    "LOCAL_RUNS_DIR",
    "LOCAL_SERVING_DIR",
    "INFERENCE_API_KEY",
)


# Package scope: the platform stops (and the environment is restored) before other test packages run.
@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    saved = {name: os.environ.pop(name) for name in ISOLATE if name in os.environ}
    get_settings.cache_clear()
    logs = tmp_path_factory.mktemp("platform") / "logs"
    running = Platform(free_port(), log_dir=str(logs), print_fn=lambda _: None, reconcile_seconds=5).start()
    try:
        yield running
    finally:
        running.stop()
        os.environ.update(saved)
        get_settings.cache_clear()


@pytest.fixture(scope="package")
def openai_client(platform: Platform) -> OpenAI:
    return OpenAI(base_url=f"{platform.url}/v1", api_key=platform.demo_key, max_retries=0, timeout=60)


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., Any]:
    def wait(fn: Callable[[], Any], timeout: float = 60.0, interval: float = 0.25) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = fn()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout:.0f}s")

    return wait


@pytest.fixture(scope="package")
def zorbia_job(openai_client: OpenAI, tmp_path_factory: pytest.TempPathFactory, wait_for: Callable[..., Any]) -> Any:
    """One real LoRA job on SmolLM2, trained once for the fine-tuning and the serving tests: the finished job."""
    from tests.e2e import zorbia

    job = zorbia.train(openai_client, tmp_path_factory.mktemp("zorbia"))
    done = wait_for(lambda: zorbia.finished(openai_client, job.id), timeout=900, interval=2)
    assert done.status == "succeeded", done.error
    return done
