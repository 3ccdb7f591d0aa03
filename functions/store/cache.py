"""Redis: tenant config and API-key cache with TTL, per-tenant rate limits (sliding window, `limits`).

Redis is an accelerator, never a dependency: when it is down every call degrades (cache miss, rate limit not
enforced), the failure is logged once per outage, and a circuit breaker (`pybreaker`) fails calls fast for a few
seconds after a failure, so requests do not each wait for a connect timeout.

Invalidation is the exception: a revoked key or a changed tenant config must take effect for every later request,
on every instance (they share Redis as their only cache). So fills are SET NX (never overwrite), and an
invalidation writes a tombstone in a strict mode that ignores the breaker and retries for a bounded time
(`invalidate`); readers see a tombstone as a miss and cannot fill over it until it expires.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from functions.core.lazy import Lazy
from functions.core.observability import log
from functions.core.settings import Settings, get_settings
from functions.store import rate_limit

RETRY_AFTER_FAILURE_SECONDS = 5.0
TOMBSTONE = "~invalidated"  # not JSON, so no cached value can look like it
STRICT_BACKOFF_SECONDS = (0.05, 0.5)  # first and largest pause between strict attempts


class _OutageLog:
    """A pybreaker listener: one warning when the breaker opens from closed (an outage starts), one line when it
    closes again; trial calls that fail while Redis stays down say nothing."""

    def __init__(self) -> None:
        self.last_error: BaseException | None = None

    def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def success(self, cb: Any) -> None:
        pass

    def failure(self, cb: Any, exc: BaseException) -> None:
        self.last_error = exc

    def state_change(self, cb: Any, old: Any, new: Any) -> None:
        was = old.name if old is not None else "closed"
        if new.name == "open" and was == "closed":
            log(
                "warning",
                "redis unavailable; falling back to MongoDB and skipping rate limits",
                error=str(self.last_error),
            )
        elif new.name == "closed" and was != "closed":
            log("info", "redis available again")


class Cache:
    def __init__(self, url: str | None, timeout: float = 0.5, retry_after: float = RETRY_AFTER_FAILURE_SECONDS) -> None:
        self.url = url
        self._client: Any = None
        self._timeout = timeout
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._breaker: Any = None
        self._outage = _OutageLog()
        self._limiter: Any = None

    @property
    def client(self) -> Any:
        if self._client is None and self.url:
            import redis

            self._client = redis.Redis.from_url(
                self.url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout, decode_responses=True
            )
        return self._client

    @property
    def breaker(self) -> Any:
        """Opens on the first Redis failure; after `retry_after` seconds the next call is a trial (pybreaker)."""
        with self._lock:
            if self._breaker is None:
                import pybreaker  # imports redis: both load on first use, not at cold start
                import redis

                outage: Any = self._outage  # a listener by duck typing: subclassing would import pybreaker early
                self._breaker = pybreaker.CircuitBreaker(
                    fail_max=1,
                    reset_timeout=self._retry_after,
                    exclude=[lambda exc: not isinstance(exc, redis.RedisError | OSError)],  # bugs are not outages
                    listeners=[outage],
                    name="redis",
                )
            return self._breaker

    def _call(self, fn: Any) -> Any:
        if not self.url:
            return None
        import pybreaker
        import redis

        try:
            # `calling()`, not `call()`: pybreaker holds its lock through a `call`, which would serialise every
            # request's Redis round trip; the context manager holds it only to check and to record the outcome.
            with self.breaker.calling():
                return fn(self.client)
        except pybreaker.CircuitBreakerError:
            return None  # open: Redis failed moments ago (or this very call found it down)
        except (redis.RedisError, OSError):
            return None  # a trial call that failed: the breaker is open again

    def _trip(self, exc: BaseException) -> None:
        """Open the breaker (or keep it open for another window) after a failure outside `_call`."""
        self._outage.last_error = exc
        self.breaker.open()

    def invalidate(self, keys: list[str], ttl: int, timeout: float) -> bool:
        """Write a tombstone over each key, ignoring the breaker and retrying until `timeout` (0: one try).

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
                self._trip(exc)
                left = deadline - time.monotonic()
                if left <= 0:
                    log("error", "redis did not take a cache invalidation in time", keys=keys, error=str(exc))
                    return False
                time.sleep(min(pause, left))
                pause = min(pause * 2, largest)
                continue
            if self.breaker.current_state != "closed":
                self.breaker.close()  # it answered: reads may use it again (and see the tombstone)
            return True

    def available(self) -> bool:
        return bool(self._call(lambda r: r.ping()))

    def get_json(self, key: str) -> Any:
        """The cached value; None on a miss, a tombstone (go to the source of truth) or Redis down."""
        raw = self._call(lambda r: r.get(key))
        return json.loads(raw) if raw and raw != TOMBSTONE else None

    def set_json(self, key: str, value: Any, ttl: int) -> None:
        self._call(lambda r: r.set(key, json.dumps(value), ex=ttl))

    def fill_json(self, key: str, value: Any, ttl: int) -> None:
        """Cache a value read from the source of truth: NX, so it never replaces a tombstone (or a newer fill)."""
        self._call(lambda r: r.set(key, json.dumps(value), ex=ttl, nx=True))

    def delete(self, *keys: str) -> None:
        if keys:
            self._call(lambda r: r.delete(*keys))

    def list_push(self, key: str, value: str, ttl: int) -> None:
        """Append to a list (KEDA's Redis scaler reads its length), which expires `ttl` seconds after the last push."""

        self._write_then_expire(key, ttl, lambda pipe: pipe.rpush(key, value))

    def list_remove(self, key: str, value: str) -> None:
        self._call(lambda r: r.lrem(key, 0, value))

    def list_length(self, key: str) -> int:
        return int(self._call(lambda r: r.llen(key)) or 0)

    def count(self, key: str, delta: int, ttl: int) -> None:
        """Add `delta` to a counter that expires `ttl` seconds after its last change (a lost decrement heals)."""

        self._write_then_expire(key, ttl, lambda pipe: pipe.incrby(key, delta))

    def _write_then_expire(self, key: str, ttl: int, write: Callable[[Any], Any]) -> None:
        """One round trip: `write` to `key` and (re)start its `ttl`."""

        def op(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            write(pipe)
            pipe.expire(key, ttl)
            pipe.execute()

        self._call(op)

    def counter(self, key: str) -> int:
        return int(self._call(lambda r: r.get(key)) or 0)

    def _rate_limiter(self, r: Any) -> Any:
        if self._limiter is None:
            self._limiter = rate_limit.limiter(self.url, r)
        return self._limiter

    def rate_limit(self, key: str, limit: int, window_seconds: int) -> float | None:
        """Count one hit against `limit` per sliding `window_seconds` (functions/store/rate_limit.py). None when the
        hit is allowed or Redis is unavailable; else the seconds until one more would be."""
        return self._call(lambda r: rate_limit.hit(self._rate_limiter(r), key, limit, window_seconds))

    def rate_limit_wait(self, key: str, limit: int, window_seconds: int) -> float:
        """The seconds until one more hit would be allowed (0 when Redis cannot tell)."""
        return self._call(lambda r: rate_limit.wait(self._rate_limiter(r), key, limit, window_seconds)) or 0.0

    def read_and_hit(
        self, keys: list[str], rate_key: str, limit: int, window_seconds: int
    ) -> tuple[tuple[str | None, ...], bool] | None:
        """GET each of `keys` (raw; a tombstone reads as None) and count one hit as `rate_limit` does, in one round
        trip. The values and whether the hit was allowed; None when Redis is unavailable or this instance has not
        counted a hit yet (nor loaded `limits`' script): then the caller takes the long way."""
        if self._limiter is None:
            return None

        def op(r: Any) -> tuple[tuple[str | None, ...], bool] | None:
            done = rate_limit.read_and_hit(r, self._limiter, keys, rate_key, limit, window_seconds)
            return None if done is None else (tuple(None if v == TOMBSTONE else v for v in done[0]), done[1])

        return self._call(op)


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
