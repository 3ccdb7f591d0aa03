"""Where the proxy's routing for a (tenant, model) is cached in Redis, and how every change to a deployment drops
it (functions/deployments/routing.py reads it; lifecycle and service writes drop it)."""

from __future__ import annotations

from functions.core import ids
from functions.store.cache import Cache


def route_key(client_code: str, model: str) -> str:
    return f"route:{client_code}:{ids.hash_key(model)[:32]}"


def invalidate_route(cache: Cache, client_code: str, model: str) -> None:
    cache.delete(route_key(client_code, model))
