"""How the data stores behind the API are doing, for `/health` (load balancers, uptime checks)."""

from __future__ import annotations

from dataclasses import dataclass

from functions.store.cache import Cache
from functions.store.mongo import Store


@dataclass(frozen=True)
class Health:
    ok: bool  # MongoDB answers: without it nothing works
    status: str  # healthy | degraded (Redis is configured but down: no cache, no rate limits) | unhealthy
    components: dict[str, str]


def check(store: Store, cache: Cache) -> Health:
    mongo_ok = store.ping()
    redis = "ok" if cache.available() else ("unavailable" if cache.url else "disabled")
    status = "unhealthy" if not mongo_ok else ("degraded" if redis == "unavailable" else "healthy")
    return Health(mongo_ok, status, {"mongodb": "ok" if mongo_ok else "unavailable", "redis": redis})
