"""SQS messages the control plane sends: dispatch requests for jobs (the status and ingest queues are fed by S3)."""

from __future__ import annotations

import json
import threading
from typing import Any

from functions.core.errors import ServiceUnavailable
from functions.core.settings import Settings, get_settings


class Queues:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3

                    self._client = boto3.client(
                        "sqs", region_name=self.settings.aws_region, endpoint_url=self.settings.aws_endpoint_url
                    )
        return self._client

    def send_dispatch(self, job_id: str, action: str = "start") -> None:
        url = self.settings.dispatch_queue_url
        if not url:
            raise ServiceUnavailable("DISPATCH_QUEUE_URL is not configured: jobs cannot be dispatched")
        self.client.send_message(QueueUrl=url, MessageBody=json.dumps({"job_id": job_id, "action": action}))


_queues: Queues | None = None
_queues_lock = threading.Lock()


def get_queues() -> Queues:
    global _queues
    if _queues is None:
        with _queues_lock:
            if _queues is None:
                _queues = Queues(get_settings())
    return _queues


def reset_queues(queues: Queues | None = None) -> None:
    global _queues
    with _queues_lock:
        _queues = queues
