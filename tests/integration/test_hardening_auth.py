"""A key revoke or a tenant config change takes effect at once for every later request, on every instance, even when
Redis stalls while it happens; when Redis stays away longer than the bound, the change is refused with nothing
changed. Redis here is a private redis-server (SIGSTOP freezes it), so the session's one is never frozen."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.core import ids
from functions.core.settings import get_settings
from functions.local.procs import Child, start_redis
from functions.store import cache as cache_module
from functions.store.cache import Cache, api_key_key
from functions.store.mongo import get_store
from functions.tenants import service
from tests.helpers.openai_schema import assert_openai

Headers = dict[str, str]


@pytest.fixture(scope="module")
def own_redis() -> Iterator[Child]:
    with start_redis() as child:
        yield child


@pytest.fixture
def stallable(own_redis: Child, env: Callable[..., Any]) -> Iterator[Child]:
    """This test's API uses the private Redis; it is resumed and emptied whatever the test did."""
    env(REDIS_URL=own_redis.url)
    cache_module.get_cache().client.flushdb()
    yield own_redis
    os.kill(own_redis.pid, signal.SIGCONT)
    cache_module.reset_cache()


def another_instance() -> None:
    """What a second Lambda instance sees: the same Redis, none of this process's 'Redis is down' memory."""
    cache_module.reset_cache(cache_module.connect(get_settings()))


def stall_then_trip(client: TestClient, redis: Child, headers: Headers) -> None:
    """Freeze Redis, and let one request find out, so this instance is in its 'Redis is down' window."""
    os.kill(redis.pid, signal.SIGSTOP)
    assert client.get("/v1/files", headers=headers).status_code == 200  # MongoDB answered


def resume_after(redis: Child, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (redis.pid, signal.SIGCONT))
    timer.start()
    return timer


def first_key(client: TestClient, admin: Headers, code: str) -> dict[str, Any]:
    keys: list[dict[str, Any]] = client.get(f"/v1/tenants/{code}/api_keys", headers=admin).json()["data"]
    return keys[0]


def test_revoke_during_a_redis_blip_takes_effect_at_once_on_every_instance(
    client: TestClient, admin: Headers, make_tenant: Callable[..., Headers], stallable: Child
) -> None:
    # Given a key whose lookup is cached in Redis, and an instance that has just seen Redis stall
    acme = make_tenant("acme")
    other = make_tenant("other")
    assert client.get("/v1/files", headers=acme).status_code == 200
    key_id = first_key(client, admin, "acme")["id"]
    stall_then_trip(client, stallable, other)
    # When the key is revoked while Redis is still frozen, and Redis comes back half a second later
    timer = resume_after(stallable, 0.5)
    revoked = client.delete(f"/v1/tenants/acme/api_keys/{key_id}", headers=admin)
    timer.join()
    # Then the revoke succeeded and the key is refused here and on any other instance
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert client.get("/v1/files", headers=acme).status_code == 401
    another_instance()
    assert client.get("/v1/files", headers=acme).status_code == 401
    assert client.get("/v1/files", headers=acme).status_code == 401  # no refill over the tombstone
    assert client.get("/v1/files", headers=other).status_code == 200


def test_revoke_is_refused_with_nothing_changed_when_redis_stays_away(
    client: TestClient, admin: Headers, make_tenant: Callable[..., Headers], stallable: Child, env: Callable[..., Any]
) -> None:
    env(CACHE_INVALIDATION_TIMEOUT_SECONDS="1")
    acme = make_tenant("acme")
    assert client.get("/v1/files", headers=acme).status_code == 200
    key_id = first_key(client, admin, "acme")["id"]
    os.kill(stallable.pid, signal.SIGSTOP)
    # When Redis stays frozen for longer than the bound
    started = time.monotonic()
    refused = client.delete(f"/v1/tenants/acme/api_keys/{key_id}", headers=admin)
    # Then the answer is a 503 saying nothing changed, within the bound (plus one Redis timeout)
    assert time.monotonic() - started < 1 + 2 * get_settings().redis_timeout_seconds + 0.5
    assert refused.status_code == 503, refused.text
    assert_openai("ErrorResponse", refused.json())
    error = refused.json()["error"]
    assert error["code"] == "cache_unavailable" and "nothing was changed" in error["message"]
    assert first_key(client, admin, "acme")["revoked_at"] is None
    assert client.get("/v1/files", headers=acme).status_code == 200  # the key still works (MongoDB answers)
    os.kill(stallable.pid, signal.SIGCONT)
    another_instance()
    assert client.get("/v1/files", headers=acme).status_code == 200
    # And a retry once Redis is back revokes it everywhere
    assert client.delete(f"/v1/tenants/acme/api_keys/{key_id}", headers=admin).status_code == 200
    assert client.get("/v1/files", headers=acme).status_code == 401


def test_config_change_during_a_redis_blip_takes_effect_at_once_on_every_instance(
    client: TestClient, admin: Headers, make_tenant: Callable[..., Headers], stallable: Child
) -> None:
    acme = make_tenant("acme")
    other = make_tenant("other")
    assert client.get("/v1/files", headers=acme).status_code == 200  # tenant config now cached
    stall_then_trip(client, stallable, other)
    timer = resume_after(stallable, 0.5)
    patched = client.patch("/v1/tenants/acme", json={"config": {"rate_limit_per_minute": 1}}, headers=admin)
    timer.join()
    assert patched.status_code == 200, patched.text
    another_instance()
    settings = get_settings()
    tenant = service.get_tenant(get_store(), cache_module.get_cache(), settings, "acme")
    assert tenant is not None and tenant.rate_limit_per_minute == 1
    # The new limit is what requests meet: at most one of three in a minute window gets through
    statuses = [client.get("/v1/files", headers=acme).status_code for _ in range(3)]
    assert statuses.count(429) >= 2


def test_config_change_is_refused_with_nothing_changed_when_redis_stays_away(
    client: TestClient, admin: Headers, make_tenant: Callable[..., Headers], stallable: Child, env: Callable[..., Any]
) -> None:
    env(CACHE_INVALIDATION_TIMEOUT_SECONDS="0.5")
    make_tenant("acme")
    os.kill(stallable.pid, signal.SIGSTOP)
    refused = client.patch("/v1/tenants/acme", json={"config": {"rate_limit_per_minute": 1}}, headers=admin)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "cache_unavailable"
    os.kill(stallable.pid, signal.SIGCONT)
    assert client.get("/v1/tenants/acme", headers=admin).json()["config"].get("rate_limit_per_minute") is None


def test_revoking_twice_keeps_the_first_revoked_at_and_heals_a_stale_cache_entry(
    client: TestClient,
    admin: Headers,
    make_tenant: Callable[..., Headers],
    stallable: Child,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    acme = make_tenant("acme")
    key_id = first_key(client, admin, "acme")["id"]
    first = client.delete(f"/v1/tenants/acme/api_keys/{key_id}", headers=admin).json()["revoked_at"]
    # Given a stale entry for the key (a fill that escaped the first revoke), an hour later
    bearer = acme["Authorization"].removeprefix("Bearer ")
    Cache(stallable.url).client.set(api_key_key(ids.hash_key(bearer)), '"acme"')
    monkeypatch.setattr("functions.store.mongo.now", lambda: first + 3600)
    # When the key is revoked again
    again = client.delete(f"/v1/tenants/acme/api_keys/{key_id}", headers=admin)
    # Then the first revocation time stands, and the stale entry is gone
    assert again.status_code == 200 and again.json()["revoked_at"] == first
    assert first_key(client, admin, "acme")["revoked_at"] == first
    assert client.get("/v1/files", headers=acme).status_code == 401


def test_a_fill_never_replaces_a_tombstone_and_readers_see_it_as_a_miss(env: Callable[..., Any]) -> None:
    cache = cache_module.get_cache()
    cache.fill_json("tenant:acme", {"_id": "acme"}, 60)
    assert cache.get_json("tenant:acme") == {"_id": "acme"}
    assert cache.invalidate(["tenant:acme"], 30, timeout=1)
    cache.fill_json("tenant:acme", {"_id": "acme", "stale": True}, 60)  # a reader that read before the change
    assert cache.get_json("tenant:acme") is None
    assert 0 < cache.client.ttl("tenant:acme") <= 30
