"""A stand-in for `redis.Redis` for the circuit-breaker tests (the control plane's cache and the inference
server's prediction cache): it counts the calls that reach it and fails them while `down`."""

from __future__ import annotations

from typing import Any

import redis


class FlakyRedis:
    """The few commands the caches use, over a dict; while `down` every call raises `error` (a Redis outage)."""

    def __init__(self, error: type[redis.RedisError] = redis.ConnectionError) -> None:
        self.down = False
        self.calls = 0
        self.data: dict[str, str] = {}
        self.error = error

    def _reach(self) -> None:
        self.calls += 1
        if self.down:
            raise self.error("Redis is down (FlakyRedis)")

    def get(self, key: str) -> str | None:
        self._reach()
        return self.data.get(key)

    def set(self, key: str, value: str, ex: int | None = None, nx: bool = False) -> bool:
        self._reach()
        if nx and key in self.data:
            return False
        self.data[key] = value
        return True

    def ping(self) -> bool:
        self._reach()
        return True

    def scan_iter(self, match: str, count: int) -> Any:
        self._reach()
        return iter([k for k in self.data if k.startswith(match.rstrip("*"))])

    def delete(self, *keys: str) -> int:
        self._reach()
        return sum(self.data.pop(k, None) is not None for k in keys)

    def pipeline(self, transaction: bool = False) -> _Pipeline:
        return _Pipeline(self)


class _Pipeline:
    """SETs queued and sent in one call (one reach), as a pipeline's round trip is one."""

    def __init__(self, redis_: FlakyRedis) -> None:
        self.redis = redis_
        self.ops: list[tuple[str, str]] = []

    def set(self, key: str, value: str, ex: int | None = None) -> None:
        self.ops.append((key, value))

    def execute(self) -> None:
        self.redis._reach()
        self.redis.data.update(self.ops)
