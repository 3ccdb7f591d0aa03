"""What the deployment tests share: waiting for a deployment's status through the API, a short chat body, the
events of an SSE answer, and fine-tuned models registered from an adapter's files (as a finished job leaves them)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient


def until(client: TestClient, headers: dict[str, str], deployment_id: str, *states: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        body = client.get(f"/v1/deployments/{deployment_id}", headers=headers).json()
        if body["status"] in states:
            return body
        time.sleep(0.3)
    raise AssertionError(f"deployment {deployment_id} never reached {states}: {body}")


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 5, **extra}


def sse(text: str) -> list[Any]:
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def register_tabular_versions(http: Any, base: str, versions: list[Any], headers: dict[str, str]) -> None:
    """Seed 004: upload and activate each of `versions` (ministudio_serve.tabular.demo's) on the tabular deployment
    the proxy answers at `base` (`/inference/{deployment_id}`), through `http` (a TestClient or an httpx.Client)."""
    for v in versions:
        registered = http.post(
            f"{base}/models/{v.model_type}/versions",
            files={"file": ("model.skops", v.data, "application/octet-stream")},
            data={"metadata": json.dumps(v.metadata), "activate": "true"},
            headers=headers,
        )
        assert registered.status_code == 201, registered.text


def register_fine_tuned(tenant: str, base: str, tag: str, files: dict[str, bytes]) -> str:
    """Put an adapter's files where a finished job of `tenant` leaves them and record its fine-tuned model of `base`
    (the store and buckets of the current settings); the model's id."""
    import boto3

    from functions.core import ids, names
    from functions.core.models import FineTunedModel
    from functions.core.settings import get_settings
    from functions.store.mongo import get_store

    settings = get_settings()
    job_id = ids.new_id("ftjob-")
    prefix = f"{names.ARTIFACTS_PREFIX}{tenant}/{job_id}/adapter/"
    s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url)
    for name, body in files.items():
        s3.put_object(Bucket=settings.artifacts_bucket, Key=prefix + name, Body=body)
    model_id = f"ft:{base}:{tenant}:{tag}:{job_id}"
    uri = f"s3://{settings.artifacts_bucket}/{prefix}"
    get_store().models.add(
        FineTunedModel(id=model_id, client_code=tenant, base_model=base, job_id=job_id, adapter_uri=uri)
    )
    return model_id


def tiny_adapter_files(folder: Path, base: str, corrupt: bool = False) -> dict[str, bytes]:
    """A random LoRA adapter for the tiny serving model, saved under `folder` and naming `base` (the path the local
    servers serve it from) as its base; its files, the weights garbled when `corrupt`."""
    from ministudio_common import loader
    from transformers import AutoTokenizer

    from tests.helpers.datasets import edit_json
    from tests.helpers.tiny_models import BASE, save_adapter

    saved = save_adapter(folder, AutoTokenizer.from_pretrained(loader.resolve(BASE)), seed=3)
    edit_json(saved / "adapter_config.json", base_model_name_or_path=base)
    garbled = {".safetensors"} if corrupt else set()
    return {f.name: b"not tensors" if f.suffix in garbled else f.read_bytes() for f in saved.iterdir()}
