"""Redis: tenant config and API-key cache with TTL, per-tenant rate limits (sliding window, `limits`).

Redis is an accelerator, never a dependency: when it is down every call degrades (cache miss, rate limit not
enforced), the failure is logged once per outage, and Redis is not retried for a few seconds so requests do not
each wait for a connect timeout.

Invalidation is the exception: a revoked key or a changed tenant config must take effect for every later request,
on every instance (they share Redis as their only cache). So fills are SET NX (never overwrite), and an
invalidation writes a tombstone in a strict mode that ignores the down window and retries for a bounded time
(`invalidate`); readers see a tombstone as a miss and cannot fill over it until it expires.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from functions.core.lazy import Lazy
from functions.core.observability import log
from functions.core.settings import Settings, get_settings

RETRY_AFTER_FAILURE_SECONDS = 5.0
TOMBSTONE = "~invalidated"  # not JSON, so no cached value can look like it
STRICT_BACKOFF_SECONDS = (0.05, 0.5)  # first and largest pause between strict attempts


class Cache:
    def __init__(self, url: str | None, timeout: float = 0.5) -> None:
        self.url = url
        self._client: Any = None
        self._down_until = 0.0
        self._timeout = timeout
        self._lock = threading.Lock()
        self._limiter: Any = None

    @property
    def client(self) -> Any:
        if self._client is None and self.url:
            import redis

            self._client = redis.Redis.from_url(
                self.url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout, decode_responses=True
            )
        return self._client

    def _call(self, op: str, fn: Any) -> Any:
        if not self.url or time.monotonic() < self._down_until:
            return None
        import redis

        try:
            return fn(self.client)
        except (redis.RedisError, OSError) as exc:
            self._mark_down(op, exc)
            return None

    def _mark_down(self, op: str, exc: Exception) -> None:
        with self._lock:
            first = self._down_until == 0.0
            self._down_until = time.monotonic() + RETRY_AFTER_FAILURE_SECONDS
        if first:
            log("warning", "redis unavailable; falling back to MongoDB and skipping rate limits", op=op, error=str(exc))

    def invalidate(self, keys: list[str], ttl: int, timeout: float) -> bool:
        """Write a tombstone over each key, ignoring the down window and retrying until `timeout` (0: one try).

        True when Redis took them (or no Redis is configured: nothing can be cached); False when it did not in time,
        and the caller must not change the record the keys cache."""
        if not self.url or not keys:
            return True
        import redis

        def write(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for key in keys:
                pipe.set(key, TOMBSTONE, ex=ttl)
            pipe.execute()

        deadline = time.monotonic() + timeout
        pause, largest = STRICT_BACKOFF_SECONDS
        while True:
            try:
                write(self.client)
            except (redis.RedisError, OSError) as exc:
                self._mark_down("invalidate", exc)
                left = deadline - time.monotonic()
                if left <= 0:
                    log("error", "redis did not take a cache invalidation in time", keys=keys, error=str(exc))
                    return False
                time.sleep(min(pause, left))
                pause = min(pause * 2, largest)
                continue
            with self._lock:
                self._down_until = 0.0  # it answered: reads may use it again (and see the tombstone)
            return True

    def available(self) -> bool:
        result = self._call("ping", lambda r: r.ping())
        if result:
            self._down_until = 0.0
        return bool(result)

    def get_json(self, key: str) -> Any:
        """The cached value; None on a miss, a tombstone (go to the source of truth) or Redis down."""
        raw = self._call("get", lambda r: r.get(key))
        return json.loads(raw) if raw and raw != TOMBSTONE else None

    def set_json(self, key: str, value: Any, ttl: int) -> None:
        self._call("set", lambda r: r.set(key, json.dumps(value), ex=ttl))

    def fill_json(self, key: str, value: Any, ttl: int) -> None:
        """Cache a value read from the source of truth: NX, so it never replaces a tombstone (or a newer fill)."""
        self._call("fill", lambda r: r.set(key, json.dumps(value), ex=ttl, nx=True))

    def delete(self, *keys: str) -> None:
        if keys:
            self._call("delete", lambda r: r.delete(*keys))

    def rate_limit(self, key: str, limit: int, window_seconds: int) -> float | None:
        """Count one hit against `limit` per sliding `window_seconds` (the `limits` library's sliding window
        counter: a burst at a fixed window's boundary cannot pass 2x). None when the hit is allowed or Redis is
        unavailable; else the seconds until one more would be."""

        def op(r: Any) -> float | None:
            from limits import RateLimitItemPerSecond
            from limits.storage import RedisStorage
            from limits.strategies import SlidingWindowCounterRateLimiter

            if self._limiter is None:  # shares this cache's connection pool (and its timeouts)
                storage = RedisStorage(self.url or "redis://", connection_pool=r.connection_pool, key_prefix="rl")
                self._limiter = SlidingWindowCounterRateLimiter(storage)
            item = RateLimitItemPerSecond(limit, window_seconds)
            if self._limiter.hit(item, key):
                return None
            reset_at = self._limiter.get_window_stats(item, key).reset_time
            return max(0.0, reset_at - time.time())

        return self._call("rate_limit", op)


def tenant_key(client_code: str) -> str:
    return f"tenant:{client_code}"


def api_key_key(key_hash: str) -> str:
    return f"apikey:{key_hash}"


def connect(settings: Settings) -> Cache:
    if not settings.redis_dsn:
        log("warning", "Redis not configured (REDIS_URL/REDIS_HOST): caching and rate limits are off")
    return Cache(settings.redis_dsn, settings.redis_timeout_seconds)


_cache = Lazy(lambda: connect(get_settings()))


def get_cache() -> Cache:
    return _cache.get()


def reset_cache(cache: Cache | None = None) -> None:
    _cache.reset(cache)
