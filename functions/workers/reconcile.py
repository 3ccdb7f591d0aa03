"""Reconciler: run on a schedule (EventBridge, every 5 minutes) to repair what lost messages left behind."""

from __future__ import annotations

from typing import Any

from functions.compute import get_serving_backend, get_training_backend
from functions.core.settings import get_settings
from functions.deployments.resync import reconcile_deployments
from functions.jobs.recovery import reconcile
from functions.store.blobs import get_blobs
from functions.store.cache import get_cache
from functions.store.mongo import get_store
from functions.store.queues import get_queues


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = get_settings()
    report = reconcile(get_store(), get_blobs(), get_queues(), get_training_backend(settings), settings)
    serving = reconcile_deployments(get_store(), get_cache(), get_queues(), get_serving_backend(settings), settings)
    return {**report.to_dict(), **serving}
