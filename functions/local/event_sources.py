"""The event sources Lambda would give the workers, for the local platform: which handler each queue's poller calls
(functions/local/sqs_poller.py polls), and the reconciler's EventBridge schedule."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from functions.core import names


def worker_handlers() -> dict[str, Callable[[dict[str, Any], Any], Any]]:
    from functions.workers import dispatch, ingest, status

    return {
        names.INGEST_QUEUE: ingest.handler,
        names.DISPATCH_QUEUE: dispatch.handler,
        names.STATUS_QUEUE: status.handler,
    }


class Schedule(threading.Thread):
    """The reconciler's EventBridge schedule: call the handler every `period` seconds until stopped."""

    def __init__(self, period: float) -> None:
        super().__init__(name="reconcile-schedule", daemon=True)
        self.period = period
        self.stopped = threading.Event()

    def run(self) -> None:
        from functions.core.observability import log
        from functions.local.lambda_context import new_context
        from functions.workers import reconcile

        while not self.stopped.wait(self.period):
            try:
                reconcile.handler(
                    {"source": "aws.scheduler", "detail-type": "Scheduled Event"}, new_context("reconcile", 60)
                )
            except Exception as exc:  # the next tick tries again, as EventBridge would
                log("error", "reconcile failed", error=str(exc))
