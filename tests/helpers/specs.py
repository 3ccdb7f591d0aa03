"""Training specs for the compute backend tests, and a stand-in Ray head that records what it is sent."""

from __future__ import annotations

import json
from typing import Any

import httpx

from functions.compute.base import TrainingSpec


def training_spec(job_id: str, **fields: Any) -> TrainingSpec:
    """A spec for acme's job `job_id` on model "m" (what the fake trainers run); `fields` replace the defaults."""
    values: dict[str, Any] = {
        "job_id": job_id,
        "tenant": "acme",
        "model": "m",
        "training_file": "s3://b/train.jsonl",
        "output": f"s3://b/artifacts/acme/{job_id}/",
        **fields,
    }
    return TrainingSpec(**values)


def recording_ray_head(submission_id: str) -> tuple[httpx.MockTransport, list[dict[str, Any]]]:
    """A Ray Jobs API that knows no job (GET: 404) and accepts every submission as `submission_id`; the transport
    for RayBackend and the bodies it was sent."""
    posted: list[dict[str, Any]] = []

    def head(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404)
        posted.append(json.loads(request.content))
        return httpx.Response(200, json={"submission_id": submission_id})

    return httpx.MockTransport(head), posted
