"""The control plane's Redis circuit breaker (pybreaker, functions/store/cache.py): after a failure, calls fail fast
for a few seconds instead of each waiting for a timeout; an outage is logged once, however long it lasts; a strict
invalidation ignores the breaker, and once Redis takes it, reads use Redis again at once."""

from __future__ import annotations

import time

import pytest

from functions.store import cache as cache_module
from functions.store.cache import TOMBSTONE, Cache
from tests.helpers.flaky_redis import FlakyRedis

WINDOW = 0.3


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    monkeypatch.setattr(cache_module, "log", lambda level, message, **fields: lines.append((level, message)))
    return lines


@pytest.fixture
def flaky() -> FlakyRedis:
    return FlakyRedis()


@pytest.fixture
def cache(flaky: FlakyRedis) -> Cache:
    c = Cache("redis://flaky", retry_after=WINDOW)
    c._client = flaky
    return c


def test_after_a_failure_calls_fail_fast_until_the_window_passes(cache: Cache, flaky: FlakyRedis) -> None:
    # Given Redis down
    flaky.down = True
    # When many requests read the cache at once
    answers = [cache.get_json("tenant:acme") for _ in range(20)]
    # Then each is a miss, and only the first reached Redis
    assert answers == [None] * 20 and flaky.calls == 1
    assert cache.rate_limit("acme", 1, 60) is None and not cache.available() and flaky.calls == 1
    # And after the window one trial call goes through; while Redis stays down, the rest fail fast again
    time.sleep(WINDOW + 0.05)
    assert [cache.get_json("tenant:acme") for _ in range(5)] == [None] * 5 and flaky.calls == 2


def test_an_outage_is_logged_once_and_the_next_one_again(
    cache: Cache, flaky: FlakyRedis, logged: list[tuple[str, str]]
) -> None:
    flaky.down = True
    for _ in range(3):  # three windows of one outage
        cache.get_json("k")
        time.sleep(WINDOW + 0.05)
    assert [level for level, _ in logged] == ["warning"]
    # When Redis comes back, reads use it at once and its return is told once
    flaky.down = False
    cache.set_json("k", {"v": 1}, 60)
    assert cache.get_json("k") == {"v": 1} and [level for level, _ in logged] == ["warning", "info"]
    # And a second outage is a second warning
    flaky.down = True
    cache.get_json("k")
    cache.get_json("k")
    assert [level for level, _ in logged] == ["warning", "info", "warning"]


def test_invalidate_ignores_the_open_breaker_and_closes_it(cache: Cache, flaky: FlakyRedis) -> None:
    # Given an instance that has just seen Redis fail, and Redis back a moment later
    flaky.down = True
    assert cache.get_json("apikey:h") is None
    flaky.down = False
    # When a key is revoked within the window
    assert cache.invalidate(["apikey:h"], ttl=30, timeout=0)
    # Then the tombstone was written at once, and reads go to Redis again (and see it as a miss)
    assert flaky.data["apikey:h"] == TOMBSTONE
    calls = flaky.calls
    assert cache.get_json("apikey:h") is None and flaky.calls == calls + 1


def test_a_failed_invalidation_opens_the_breaker(cache: Cache, flaky: FlakyRedis) -> None:
    flaky.down = True
    assert not cache.invalidate(["tenant:acme"], ttl=30, timeout=0)
    calls = flaky.calls
    assert cache.get_json("tenant:acme") is None and flaky.calls == calls  # failed fast


def test_a_bug_is_raised_not_mistaken_for_an_outage(cache: Cache, flaky: FlakyRedis) -> None:
    with pytest.raises(TypeError):
        cache.set_json("k", object(), 60)  # not JSON-able: the caller's bug
    cache.set_json("k", {"v": 1}, 60)
    assert cache.get_json("k") == {"v": 1}  # the breaker stayed closed
