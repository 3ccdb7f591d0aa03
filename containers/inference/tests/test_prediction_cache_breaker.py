"""The prediction cache's circuit breaker (pybreaker): after a Redis failure, calls fail fast for a few seconds
instead of each paying a timeout; the outage is logged once; Redis trouble, or a bug in the cache, never fails a
prediction."""

from __future__ import annotations

import logging
import time

import pytest
import redis
from tests.helpers.flaky_redis import FlakyRedis

from ministudio_serve.tabular.cache import PredictionCache

WINDOW = 0.3


@pytest.fixture
def flaky() -> FlakyRedis:
    return FlakyRedis(redis.TimeoutError)


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
