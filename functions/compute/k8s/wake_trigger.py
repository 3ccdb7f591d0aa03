"""The ScaledObject's second trigger, for a deployment that may sleep at zero: at zero no pod exports
`vllm:num_requests_waiting`, so the Prometheus trigger alone would never wake it. The control plane's proxy holds
each request for an idle deployment as an entry in a Redis list (functions/deployments/activity.py `held_key`,
the deployment's backend name), and KEDA's Redis Lists scaler reads its length: activated by one held request
(`activationListLength` 0), it scales the Deployment 0 → 1, and on to one replica per LIST_LENGTH held requests.
KEDA then scales it back to zero after `cooldownPeriod` (the deployment's `idle_seconds`) without activity."""

from __future__ import annotations

from typing import Any

from functions.compute.serving import ServingSpec
from functions.core.settings import Settings
from functions.deployments.activity import held_key

LIST_LENGTH = 4  # held requests per replica KEDA aims for while the list is not empty
ACTIVATION_LIST_LENGTH = 0  # more than this many held requests wakes a deployment at zero


def held_requests_trigger(spec: ServingSpec, settings: Settings) -> dict[str, Any] | None:
    """The trigger for a zero-minimum deployment; None when it never sleeps, or KEDA has no Redis to read."""
    if spec.min_replicas > 0 or not settings.keda_redis_address:
        return None
    return {
        "type": "redis",
        "metadata": {
            "address": settings.keda_redis_address,
            "listName": held_key(spec.name),
            "listLength": str(LIST_LENGTH),
            "activationListLength": str(ACTIVATION_LIST_LENGTH),
        },
    }


def cooldown_seconds(spec: ServingSpec, settings: Settings) -> int:
    """KEDA's cooldownPeriod applies only to the last replica (1 → 0): a zero-minimum deployment's idle_seconds."""
    return spec.idle_seconds if spec.min_replicas == 0 else settings.keda_cooldown_seconds
