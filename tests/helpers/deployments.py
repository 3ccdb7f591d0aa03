"""What the deployment tests share: waiting for a deployment's status through the API, a short chat body, and the
events of an SSE answer."""

from __future__ import annotations

import json
import time
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
