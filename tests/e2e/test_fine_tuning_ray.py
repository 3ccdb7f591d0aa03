"""The same fine-tuning flow on the `ray` backend: the platform's workers submit the real trainer to a local Ray head
through the Ray Jobs REST API (the API a KubeRay head service serves), and the job ends with an adapter in S3."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from openai import OpenAI

from functions.core.settings import get_settings
from functions.local.runtime import Platform
from tests.helpers.environ import environ
from tests.helpers.ray_head import local_ray_head

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture
def on_ray(platform: Platform) -> Iterator[str]:
    pytest.importorskip("ray", reason="the `ray` package is not installed (pip install 'ray[default]')")
    # The head's jobs see the platform's S3 endpoint; the workers read settings per message: new jobs go to Ray.
    with local_ray_head(os.environ) as address, environ(COMPUTE_BACKEND="ray", RAY_HEAD_ADDRESS=address):
        yield address


def test_job_runs_as_a_ray_job_and_produces_an_adapter(
    on_ray: str, openai_client: OpenAI, tmp_path: Path, wait_for: Callable[..., Any]
) -> None:
    import httpx

    path = tmp_path / "tiny.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"Say {i}"}, {"role": "assistant", "content": f"{i}!"}]}
        for i in range(10)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    file = openai_client.files.create(file=path.open("rb"), purpose="fine-tune")
    job = openai_client.fine_tuning.jobs.create(
        model=BASE, training_file=file.id, hyperparameters={"n_epochs": 1, "batch_size": 5}
    )

    def finished() -> Any:
        current = openai_client.fine_tuning.jobs.retrieve(job.id)
        return current if current.status in ("succeeded", "failed", "cancelled") else None

    done = wait_for(finished, timeout=900, interval=2)
    assert done.status == "succeeded", done.error
    # The run name is the job id; result.json lands just before the Ray job's process exits.
    ray_job = wait_for(lambda: (j := httpx.get(f"{on_ray}/api/jobs/{job.id}").json())["status"] != "RUNNING" and j)
    assert ray_job["status"] == "SUCCEEDED" and ray_job["submission_id"] == job.id
    settings = get_settings()
    s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url)
    head = s3.head_object(
        Bucket=settings.artifacts_bucket, Key=f"artifacts/demo/{job.id}/adapter/adapter_model.safetensors"
    )
    assert head["ContentLength"] > 0
