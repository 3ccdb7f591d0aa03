"""Tenant logic: create tenants and keys, authenticate bearer keys, enforce rate limits.

Keys are shown once and stored only as SHA-256. Lookups go by hash (cached in Redis with a TTL); the final
comparison is constant-time. Redis down means MongoDB answers and rate limits are skipped.

A revoke or a config change takes effect at once for every later request, whatever Redis did: the cache entry is
tombstoned (strict, bounded retries) before MongoDB changes, and again after it (catching a fill that raced); when
Redis cannot take the tombstone in time the change is refused with a 503 and MongoDB is left as it was.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from functions.core import ids
from functions.core.errors import InvalidRequest, NotFound, RateLimited, ServiceUnavailable, Unauthorized
from functions.core.models import ApiKey, Tenant
from functions.core.settings import Settings
from functions.store.cache import Cache, api_key_key, tenant_key
from functions.store.mongo import Store

RATE_WINDOW_SECONDS = 60
CONFIG_KEYS = {"rate_limit_per_minute": int, "display_name": str}
# While a tombstone lives no instance refills the entry; it must outlast a request's read-MongoDB-then-fill gap.
TOMBSTONE_SECONDS = 30


def validate_client_code(value: str, param: str = "client_code") -> str:
    if not ids.valid_client_code(value):
        raise InvalidRequest(
            f"{param} {value!r} is invalid: use 2-32 characters of a-z, 0-9 and '-', starting with a letter",
            param=param,
        )
    return value


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    for key, value in config.items():
        expected = CONFIG_KEYS.get(key)
        if expected is None:
            raise InvalidRequest(
                f"config.{key} is not a known setting; known: {sorted(CONFIG_KEYS)}", param=f"config.{key}"
            )
        if not isinstance(value, expected) or isinstance(value, bool):
            raise InvalidRequest(f"config.{key} must be a {expected.__name__}", param=f"config.{key}")
        if key == "rate_limit_per_minute" and isinstance(value, int) and not 1 <= value <= 1_000_000:
            raise InvalidRequest("config.rate_limit_per_minute must be between 1 and 1000000", param=f"config.{key}")
    return config


def create_tenant(store: Store, client_code: str, config: dict[str, Any]) -> Tenant:
    validate_client_code(client_code)
    return store.tenants.create(Tenant(id=client_code, config=validate_config(config)))


def get_tenant(store: Store, cache: Cache, settings: Settings, client_code: str) -> Tenant | None:
    cached = cache.get_json(tenant_key(client_code))
    if cached is not None:
        return Tenant.model_validate(cached)
    tenant = store.tenants.get(client_code)
    if tenant is not None:
        cache.fill_json(tenant_key(client_code), tenant.doc(), settings.tenant_cache_ttl_seconds)
    return tenant


def require_tenant(store: Store, client_code: str) -> Tenant:
    tenant = store.tenants.get(client_code)
    if tenant is None:
        raise NotFound(f"tenant {client_code!r} not found", param="client_code")
    return tenant


def list_tenants(store: Store) -> list[Tenant]:
    return store.tenants.list()


def list_keys(store: Store, client_code: str) -> list[ApiKey]:
    """The tenant's keys, revoked ones included."""
    require_tenant(store, client_code)
    return store.api_keys.list(client_code)


def _invalidate(cache: Cache, settings: Settings, key: str, what: str) -> None:
    if not cache.invalidate([key], TOMBSTONE_SECONDS, settings.cache_invalidation_timeout_seconds):
        raise ServiceUnavailable(
            f"the cache (Redis) did not answer, so {what} could not be made to take effect everywhere: "
            "nothing was changed; retry the request",
            code="cache_unavailable",
        )


def update_config(store: Store, cache: Cache, settings: Settings, client_code: str, config: dict[str, Any]) -> Tenant:
    validate_config(config)
    require_tenant(store, client_code)
    key = tenant_key(client_code)
    _invalidate(cache, settings, key, "the config change")
    tenant = store.tenants.update_config(client_code, config)
    if tenant is None:
        raise NotFound(f"tenant {client_code!r} not found", param="client_code")
    cache.invalidate([key], TOMBSTONE_SECONDS, 0)  # best effort: overwrites a fill that read the old config
    return tenant


def issue_key(store: Store, client_code: str, name: str | None) -> tuple[ApiKey, str]:
    require_tenant(store, client_code)
    secret = ids.new_api_key()
    record = ApiKey(
        id=ids.new_id("key_"), client_code=client_code, key_hash=ids.hash_key(secret), prefix=secret[:8], name=name
    )
    return store.api_keys.insert(record), secret


def revoke_key(store: Store, cache: Cache, settings: Settings, client_code: str, key_id: str) -> ApiKey:
    """Also for a key already revoked: the tombstone is written again, so retrying heals a cache left stale."""
    record = store.api_keys.get(key_id, client_code)
    if record is None:
        raise NotFound(f"API key {key_id!r} not found", param="key_id")
    key = api_key_key(record.key_hash)
    _invalidate(cache, settings, key, "the revocation")
    revoked = store.api_keys.revoke(client_code, key_id)
    if revoked is None:
        raise NotFound(f"API key {key_id!r} not found", param="key_id")
    cache.invalidate([key], TOMBSTONE_SECONDS, 0)  # best effort: overwrites a fill that read the key as live
    return revoked


def authenticate(store: Store, cache: Cache, settings: Settings, bearer: str | None) -> Tenant:
    if not bearer:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    key_hash = ids.hash_key(bearer)
    client_code = cache.get_json(api_key_key(key_hash))
    if client_code is None:
        record = store.api_keys.by_hash(key_hash)
        # Constant-time check of the stored digest, so timing tells nothing about how much of a key matched.
        if record is None or not hmac.compare_digest(record.key_hash, key_hash):
            raise Unauthorized("invalid API key")
        client_code = record.client_code
        cache.fill_json(api_key_key(key_hash), client_code, settings.tenant_cache_ttl_seconds)
    tenant = get_tenant(store, cache, settings, client_code)
    if tenant is None or tenant.status != "active":
        raise Unauthorized("invalid API key")
    return tenant


def authenticate_admin(admin_key: str | None, bearer: str | None) -> None:
    if not admin_key:
        raise Unauthorized("the admin API is disabled: set ADMIN_API_KEY")
    if not bearer or not hmac.compare_digest(ids.hash_key(bearer), ids.hash_key(admin_key)):
        raise Unauthorized("invalid admin key")


def check_rate_limit(cache: Cache, settings: Settings, tenant: Tenant) -> None:
    limit = _limit(settings, tenant)
    wait = cache.rate_limit(tenant.client_code, limit, RATE_WINDOW_SECONDS)
    if wait is not None:
        raise _rate_limited(limit, wait)


def _limit(settings: Settings, tenant: Tenant) -> int:
    return tenant.rate_limit_per_minute or settings.rate_limit_per_minute


def _rate_limited(limit: int, wait: float) -> RateLimited:
    return RateLimited(f"rate limit of {limit} requests per minute exceeded", retry_after=max(1, math.ceil(wait)))


@dataclass(slots=True)
class _Seen:
    """A key this process has authenticated: its tenant, and the Redis values that said so (once confirmed)."""

    tenant: Tenant
    raw: tuple[str | None, ...] | None = None


_SEEN: dict[str, _Seen] = {}
_SEEN_MAX = 4096


def authenticate_and_limit(store: Store, cache: Cache, settings: Settings, bearer: str | None) -> Tenant:
    """`authenticate` then `check_rate_limit`, in one Redis round trip for a key this process has seen before."""
    return authenticate_limit_and_read(store, cache, settings, bearer)[0]


def authenticate_limit_and_read(
    store: Store, cache: Cache, settings: Settings, bearer: str | None, also: Callable[[str], list[str]] | None = None
) -> tuple[Tenant, list[str | None] | None]:
    """`authenticate_and_limit`, reading `also(client_code)`'s keys in the same round trip: the tenant, and those
    keys' values (a tombstone reads as None), or None where the long way ran (the caller then reads them itself).

    The key's cache entry and its tenant's are read again on every request (so a revoke or a config change, which
    tombstones them, takes effect at once), in the same pipeline as the rate-limit hit for the tenant this key had
    last time. When Redis still says what it said then, that is the answer. Otherwise the long way decides, and the
    hit already counted stands if it was for the same tenant and limit (never counted twice)."""
    if not bearer:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    key_hash = ids.hash_key(bearer)
    seen = _SEEN.get(key_hash)
    counted: tuple[str, int, bool] | None = None
    if seen is not None:
        code, limit = seen.tenant.client_code, _limit(settings, seen.tenant)
        keys = [api_key_key(key_hash), tenant_key(code), *(also(code) if also else ())]
        read = cache.read_and_hit(keys, code, limit, RATE_WINDOW_SECONDS)
        if read is not None:
            raw, allowed = read[0][:2], read[1]
            if raw == seen.raw or _confirms(raw, seen.tenant):
                seen.raw = raw
                if not allowed:
                    raise _rate_limited(limit, cache.rate_limit_wait(code, limit, RATE_WINDOW_SECONDS))
                return seen.tenant, list(read[0][2:])
            counted = (code, limit, allowed)
        _SEEN.pop(key_hash, None)
    tenant = authenticate(store, cache, settings, bearer)
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.clear()  # rare (that many keys in one process), and only costs the next requests the long way
    _SEEN[key_hash] = _Seen(tenant)
    limit = _limit(settings, tenant)
    if counted is None or counted[:2] != (tenant.client_code, limit):
        check_rate_limit(cache, settings, tenant)
    elif not counted[2]:
        raise _rate_limited(limit, cache.rate_limit_wait(tenant.client_code, limit, RATE_WINDOW_SECONDS))
    return tenant, None


def _confirms(raw: tuple[str | None, ...], tenant: Tenant) -> bool:
    """Whether Redis's entries (the key's, the tenant's) name this tenant as it is, active."""
    key_entry, tenant_entry = raw
    if key_entry is None or tenant_entry is None or json.loads(key_entry) != tenant.client_code:
        return False
    cached = Tenant.model_validate(json.loads(tenant_entry))
    return cached == tenant and cached.status == "active"
