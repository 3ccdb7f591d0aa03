"""The prediction cache's circuit breaker (pybreaker): after a Redis failure, calls fail fast for a few seconds
instead of each paying a timeout; the outage is logged once; Redis trouble, or a bug in the cache, never fails a
prediction."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import redis

from ministudio_serve.tabular.cache import PredictionCache

WINDOW = 0.3


class FlakyRedis:
    """Stands in for redis.Redis: counts the calls that reach it, and fails them while `down`."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0
        self.data: dict[str, str] = {}

    def _reach(self) -> None:
        self.calls += 1
        if self.down:
            raise redis.TimeoutError("Timeout reading from socket")

    def get(self, key: str) -> str | None:
        self._reach()
        return self.data.get(key)

    def set(self, key: str, value: str, ex: int | None = None) -> None:
        self._reach()
        self.data[key] = value

    def scan_iter(self, match: str, count: int) -> Any:
        self._reach()
        return iter([k for k in self.data if k.startswith(match.rstrip("*"))])

    def delete(self, *keys: str) -> int:
        self._reach()
        return sum(self.data.pop(k, None) is not None for k in keys)


@pytest.fixture
def flaky() -> FlakyRedis:
    return FlakyRedis()


@pytest.fixture
def cache(flaky: FlakyRedis) -> PredictionCache:
    c = PredictionCache("redis://flaky", ttl_s=60, backoff_s=WINDOW)
    c._client = flaky
    return c


def test_redis_down_fails_fast_and_is_logged_once(
    cache: PredictionCache, flaky: FlakyRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ministudio_serve.tabular.cache")
    flaky.down = True
    # When predictions keep coming while Redis is down, for three windows
    for _ in range(3):
        assert [cache.get("k") for _ in range(10)] == [None] * 10
        cache.set("k", {"label": "x"})
        assert cache.drop_tenant("acme") == 0
        time.sleep(WINDOW + 0.05)
    # Then one call per window reached Redis, and the outage was told once
    assert flaky.calls == 3
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    # And once Redis answers, the cache works at once, and says so
    flaky.down = False
    cache.set("k", {"label": "x"})
    assert cache.get("k") == {"label": "x"}
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]


def test_a_bug_in_the_cache_leaves_the_prediction_uncached_and_redis_in_use(
    cache: PredictionCache, flaky: FlakyRedis
) -> None:
    cache.set("k", {"label": object()})  # not JSON-able: no error reaches the request
    cache.set("k", {"label": "x"})
    assert cache.get("k") == {"label": "x"} and flaky.calls == 2  # the breaker stayed closed
