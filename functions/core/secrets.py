"""Secrets Manager values, read one way: Powertools parameters, cached per container for `SECRETS_MAX_AGE_SECONDS`.

Settings read the MongoDB, Redis and inference-key secrets through `read` when they are built; the admin key is read
per request, so a rotated one takes effect within the max age, without a redeploy. Powertools and boto3 are imported
on the first read only: a cold start that reads no secret (locally, always) never loads them.
"""

from __future__ import annotations

import threading
from typing import Any

# One provider (one boto3 client, one cache) per region; Powertools' module-level default would ignore the region.
_providers: dict[str, Any] = {}
_lock = threading.Lock()


def read(arn: str, region: str, max_age: int) -> str | None:
    """The secret's string, fetched again once the cached copy is `max_age` seconds old (0: every call).
    None when the secret holds an empty string."""
    value = _provider(region).get(arn, max_age=max_age)
    return str(value) if value else None


def _provider(region: str) -> Any:
    with _lock:
        provider = _providers.get(region)
        if provider is None:
            from aws_lambda_powertools.utilities.parameters import SecretsProvider
            from botocore.config import Config

            provider = _providers[region] = SecretsProvider(boto_config=Config(region_name=region))
        return provider


def reset() -> None:
    """Forget providers and their cached values (tests: each moto mock needs clients created inside it)."""
    with _lock:
        _providers.clear()
