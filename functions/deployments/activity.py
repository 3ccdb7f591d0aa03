"""A deployment's traffic as scale to zero reads it, kept in Redis rather than MongoDB: when it last had a request
(the proxy writes it at most once per TOUCH_SECONDS per deployment and process, so a busy model costs one Redis write
every few seconds, not one MongoDB write per request), and the requests the proxy holds for a deployment at zero
(one list entry each while held, a list KEDA's Redis scaler reads on EKS to start a replica)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from functions.store.cache import Cache

TOUCH_SECONDS = 2.0  # idle times are this coarse: a deployment idles between idle_seconds and idle_seconds + this
_LAST_TTL_SECONDS = 8 * 86400  # longer than any idle_seconds: an expired key means idle for that long at least
_touched: dict[str, float] = {}


def last_key(deployment_id: str) -> str:
    return f"lastreq:{deployment_id}"


def held_key(name: str) -> str:
    """The list of requests held for the server `name` (a deployment's backend name, shared by its riders)."""
    return f"held:{name}"


def touch(cache: Cache, deployment_id: str) -> None:
    """Note a request for the deployment (inline on the event loop: a Redis SET every few seconds at most)."""
    now = time.monotonic()
    if now - _touched.get(deployment_id, float("-inf")) < TOUCH_SECONDS:
        return
    _touched[deployment_id] = now
    cache.set_json(last_key(deployment_id), time.time(), _LAST_TTL_SECONDS)


def last_request(cache: Cache, deployment_ids: Iterable[str]) -> float | None:
    """The newest request time (epoch seconds) of any of the deployments; None when none is known."""
    seen = [v for i in deployment_ids if isinstance(v := cache.get_json(last_key(i)), int | float)]
    return max(seen) if seen else None


def in_flight_key(deployment_id: str) -> str:
    return f"inflight:{deployment_id}"


def begin(cache: Cache, deployment_id: str, ttl: int) -> None:
    """A request to a deployment that may sleep has started (ended: `end`); it expires after `ttl` if never ended."""
    cache.count(in_flight_key(deployment_id), 1, ttl)


def end(cache: Cache, deployment_id: str, ttl: int) -> None:
    cache.count(in_flight_key(deployment_id), -1, ttl)


def in_flight(cache: Cache, deployment_ids: Iterable[str]) -> int:
    """Requests under way to any of the deployments (a server answering one is not idle, however long it takes)."""
    return sum(max(0, cache.counter(in_flight_key(i))) for i in deployment_ids)


def forget(deployment_id: str) -> None:
    """Let the next request write its time at once (after a wake-up, whose request must count)."""
    _touched.pop(deployment_id, None)
