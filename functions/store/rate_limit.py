"""Per-tenant rate limits: the `limits` library's sliding window counter on the cache's Redis (a burst at a fixed
window's boundary cannot pass 2x), and the same hit sent in one pipeline with other reads (`read_and_hit`), so a
request's authentication and its rate limit cost one round trip. `limits` and `redis` load on first use."""

from __future__ import annotations

import time
from typing import Any

_ITEMS: dict[tuple[int, int], Any] = {}


def limiter(url: str | None, client: Any) -> Any:
    """A sliding-window limiter sharing `client`'s connection pool (and its timeouts)."""
    from limits.storage import RedisStorage
    from limits.strategies import SlidingWindowCounterRateLimiter

    storage = RedisStorage(url or "redis://", connection_pool=client.connection_pool, key_prefix="rl")
    return SlidingWindowCounterRateLimiter(storage)


def item(limit: int, window_seconds: int) -> Any:
    """`limits`' item for `limit` hits per `window_seconds`, made once (it is immutable)."""
    found = _ITEMS.get((limit, window_seconds))
    if found is None:
        from limits import RateLimitItemPerSecond

        found = _ITEMS[(limit, window_seconds)] = RateLimitItemPerSecond(limit, window_seconds)
    return found


def hit(rate_limiter: Any, key: str, limit: int, window_seconds: int) -> float | None:
    """Count one hit: None when allowed, else the seconds until one more would be."""
    window = item(limit, window_seconds)
    return None if rate_limiter.hit(window, key) else wait(rate_limiter, key, limit, window_seconds)


def wait(rate_limiter: Any, key: str, limit: int, window_seconds: int) -> float:
    """The seconds until one more hit would be allowed."""
    stats = rate_limiter.get_window_stats(item(limit, window_seconds), key)
    return float(max(0.0, stats.reset_time - time.time()))


def read_and_hit(
    client: Any, rate_limiter: Any, keys: list[str], rate_key: str, limit: int, window_seconds: int
) -> tuple[list[str | None], bool] | None:
    """GET each of `keys` and count one hit as `hit` does, in one pipeline: the values and whether the hit was
    allowed; None when Redis has not got `limits`' script (it restarted): `hit` loads it again."""
    import redis

    storage = rate_limiter.storage
    window = item(limit, window_seconds)
    counted = window.key_for(rate_key)
    # The keys and arguments RedisStorage.acquire_sliding_window_entry passes to the same script
    # (tests/integration/test_auth_round_trips.py holds the two ways to one count).
    previous = storage.prefixed_key(storage._previous_window_key(counted))
    current = storage.prefixed_key(storage._current_window_key(counted))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
    pipe.evalsha(storage.lua_acquire_sliding_window.sha, 2, previous, current, limit, window.get_expiry(), 1)
    *values, acquired = pipe.execute(raise_on_error=False)
    if isinstance(acquired, redis.exceptions.NoScriptError):
        return None
    for value in (*values, acquired):
        if isinstance(value, Exception):
            raise value
    return values, bool(acquired)
