"""Prediction cache in Redis (seed 004: "Caches response in Redis"), keyed on tenant, model type, version, the model
file's digest and the canonical input. Redis is an optimisation: when it is down or slow, predictions go on
uncached, and the client stops trying for a few seconds rather than paying a timeout on every request."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

_PREFIX = "ministudio:tabular:pred"
_TIMEOUT_S = 0.25
_BACKOFF_S = 5.0


def prediction_key(tenant: str, model_type: str, version: str, file_sha256: str, input_digest: str) -> str:
    return f"{_PREFIX}:{tenant}:{model_type}:{version}:{file_sha256[:16]}:{input_digest}"


class PredictionCache:
    def __init__(self, url: str | None, ttl_s: int) -> None:
        self.url = url
        self.ttl_s = ttl_s
        self._client: Any = None
        self._lock = threading.Lock()
        self._down_until = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.url) and self.ttl_s > 0

    def status(self) -> str:
        """`disabled` (no REDIS_URL), `connected` or `unavailable`: for /health."""
        if not self.enabled:
            return "disabled"
        client = self._redis()
        try:
            client.ping()
        except Exception:  # any failure means the same to a probe
            return "unavailable"
        return "connected"

    def get(self, key: str) -> dict[str, Any] | None:
        client = self._usable()
        if client is None:
            return None
        try:
            raw = client.get(key)
        except Exception as exc:  # redis-py raises ConnectionError, TimeoutError, ResponseError...
            self._failed(exc)
            return None
        if raw is None:
            return None
        try:
            value: dict[str, Any] = json.loads(raw)
        except ValueError:
            return None
        return value

    def set(self, key: str, value: dict[str, Any]) -> None:
        client = self._usable()
        if client is None:
            return
        try:
            client.set(key, json.dumps(value, separators=(",", ":")), ex=self.ttl_s)
        except Exception as exc:
            self._failed(exc)

    def drop_tenant(self, tenant: str) -> int:
        """Forget a tenant's cached predictions (after its model files are deleted); best effort."""
        client = self._usable()
        if client is None:
            return 0
        try:
            keys = list(client.scan_iter(match=f"{_PREFIX}:{tenant}:*", count=500))
            return int(client.delete(*keys)) if keys else 0
        except Exception as exc:
            self._failed(exc)
            return 0

    def _usable(self) -> Any:
        if not self.enabled or time.monotonic() < self._down_until:
            return None
        return self._redis()

    def _redis(self) -> Any:
        with self._lock:
            if self._client is None:
                import redis

                self._client = redis.Redis.from_url(
                    str(self.url), socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S
                )
            return self._client

    def _failed(self, exc: Exception) -> None:
        if time.monotonic() >= self._down_until:
            log.warning("prediction cache unavailable, serving uncached for %.0f s: %s", _BACKOFF_S, exc)
        self._down_until = time.monotonic() + _BACKOFF_S
