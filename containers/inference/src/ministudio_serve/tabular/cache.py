"""Prediction cache in Redis (seed 004: "Caches response in Redis"), keyed on tenant, model type, version, the model
file's digest and the canonical input. Redis is an optimisation: when it is down or slow, predictions go on
uncached, and a circuit breaker (`pybreaker`) fails calls fast for a few seconds after a failure rather than paying a
timeout on every request. An outage is logged once, however long it lasts."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pybreaker
import redis

log = logging.getLogger(__name__)

_PREFIX = "ministudio:tabular:pred"
_TIMEOUT_S = 0.25
_BACKOFF_S = 5.0
T = TypeVar("T")


def prediction_key(tenant: str, model_type: str, version: str, file_sha256: str, input_digest: str) -> str:
    return f"{_PREFIX}:{tenant}:{model_type}:{version}:{file_sha256[:16]}:{input_digest}"


class _OutageLog(pybreaker.CircuitBreakerListener):
    """One warning when the breaker opens from closed (an outage starts), one line when Redis answers again."""

    def __init__(self, backoff_s: float) -> None:
        self.backoff_s = backoff_s
        self.last_error: BaseException | None = None

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        self.last_error = exc

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        was = old_state.name if old_state is not None else pybreaker.STATE_CLOSED
        if new_state.name == pybreaker.STATE_OPEN and was == pybreaker.STATE_CLOSED:
            log.warning(
                "prediction cache unavailable, serving uncached (retrying every %.0f s): %s",
                self.backoff_s,
                self.last_error,
            )
        elif new_state.name == pybreaker.STATE_CLOSED and was != pybreaker.STATE_CLOSED:
            log.info("prediction cache available again")


class PredictionCache:
    def __init__(self, url: str | None, ttl_s: int, backoff_s: float = _BACKOFF_S) -> None:
        self.url = url
        self.ttl_s = ttl_s
        self._client: Any = None
        self._lock = threading.Lock()
        # Opens on the first failure of Redis itself (redis-py's errors, sockets); a bug elsewhere is no outage.
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=1,
            reset_timeout=backoff_s,
            exclude=[lambda exc: not isinstance(exc, redis.RedisError | OSError)],
            listeners=[_OutageLog(backoff_s)],
            name="prediction-cache",
        )

    @property
    def enabled(self) -> bool:
        return bool(self.url) and self.ttl_s > 0

    def status(self) -> str:
        """`disabled` (no REDIS_URL), `connected` or `unavailable`: for /health. A probe ignores the breaker."""
        if not self.enabled:
            return "disabled"
        client = self._redis()
        try:
            client.ping()
        except Exception:  # any failure means the same to a probe
            return "unavailable"
        return "connected"

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._guarded(lambda r: r.get(key), None)
        if raw is None:
            return None
        try:
            value: dict[str, Any] = json.loads(raw)
        except ValueError:
            return None
        return value

    def set(self, key: str, value: dict[str, Any]) -> None:
        self._guarded(lambda r: r.set(key, json.dumps(value, separators=(",", ":")), ex=self.ttl_s), None)

    def drop_tenant(self, tenant: str) -> int:
        """Forget a tenant's cached predictions (after its model files are deleted); best effort."""

        def drop(r: Any) -> int:
            keys = list(r.scan_iter(match=f"{_PREFIX}:{tenant}:*", count=500))
            return int(r.delete(*keys)) if keys else 0

        return self._guarded(drop, 0)

    def _guarded(self, fn: Callable[[Any], T], fallback: T) -> T:
        """fn(client) through the breaker; `fallback` when disabled, open, or Redis failed: never an error."""
        if not self.enabled:
            return fallback
        try:
            # `calling()`, not `call()`: pybreaker holds its lock through a `call`, serialising concurrent requests.
            with self._breaker.calling():
                return fn(self._redis())
        except (pybreaker.CircuitBreakerError, redis.RedisError, OSError):
            return fallback  # open, or Redis just failed (the breaker's listener logs the outage once)
        except Exception:  # a bug here must not fail the prediction either: it goes uncached, and is logged
            log.exception("prediction cache call failed")
            return fallback

    def _redis(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = redis.Redis.from_url(
                    str(self.url), socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S
                )
            return self._client
