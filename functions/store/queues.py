"""SQS messages the control plane sends: dispatch requests for jobs (the status and ingest queues are fed by S3)."""

from __future__ import annotations

import json
from typing import Any

from functions.core.errors import ServiceUnavailable
from functions.core.lazy import Lazy
from functions.core.settings import Settings, get_settings
from functions.store.aws import aws_client


class Queues:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = Lazy(lambda: aws_client("sqs", settings))

    @property
    def client(self) -> Any:
        return self._client.get()

    def send_dispatch(self, job_id: str, action: str = "start") -> None:
        url = self.settings.dispatch_queue_url
        if not url:
            raise ServiceUnavailable("DISPATCH_QUEUE_URL is not configured: jobs cannot be dispatched")
        self.client.send_message(QueueUrl=url, MessageBody=json.dumps({"job_id": job_id, "action": action}))

    def send_deployment(self, deployment_id: str, action: str) -> None:
        """Deployments share the dispatch queue (same worker, same DLQ): `{"deployment_id", "action"}`."""
        url = self.settings.dispatch_queue_url
        if not url:
            raise ServiceUnavailable("DISPATCH_QUEUE_URL is not configured: deployments cannot be dispatched")
        body = json.dumps({"deployment_id": deployment_id, "action": action})
        self.client.send_message(QueueUrl=url, MessageBody=body)


_queues = Lazy(lambda: Queues(get_settings()))


def get_queues() -> Queues:
    return _queues.get()


def reset_queues(queues: Queues | None = None) -> None:
    _queues.reset(queues)
