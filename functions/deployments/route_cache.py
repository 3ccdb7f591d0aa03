"""Where the proxy's routing for a (tenant, model) is cached in Redis, and how every change to a deployment drops
it (functions/deployments/routing.py reads it; lifecycle and service writes drop it)."""

from __future__ import annotations

import json
from typing import Any

from functions.core import ids
from functions.store.cache import Cache


class NotRead:
    """A route entry not read yet. The proxy's caller dependency reads the entry of the asked model with the API key
    and the rate limit, in one round trip, when it can (functions/api/deps.py `proxy_caller`)."""


NOT_READ = NotRead()
# An entry read ahead: its raw value (None for a miss or a tombstone), or NOT_READ.
Prefetched = str | None | NotRead


def route_key(client_code: str, model: str) -> str:
    return f"route:{client_code}:{ids.hash_key(model)[:32]}"


def read_route(cache: Cache, key: str, prefetched: Prefetched = NOT_READ) -> Any:
    """The cached routing: the entry read ahead, else read now; None on a miss, a tombstone or Redis down."""
    if isinstance(prefetched, NotRead):
        return cache.get_json(key)
    return json.loads(prefetched) if prefetched else None


def invalidate_route(cache: Cache, client_code: str, model: str) -> None:
    cache.delete(route_key(client_code, model))
