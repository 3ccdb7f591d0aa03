"""Authentication and the rate limit cost one Redis round trip for a key the instance has seen before: the key's and
its tenant's cache entries are read again with the rate-limit hit in one pipeline (functions/tenants/service.py
`authenticate_and_limit`). Revokes, config changes and the sliding window behave as on the long way."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.store import cache as cache_module
from functions.store.cache import Cache, tenant_key

Headers = dict[str, str]


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Redis calls made through the cache (one per round trip: a pipeline is one), by the caller's name."""
    calls: list[str] = []
    real = Cache._call

    def counted(self: Cache, fn: Any) -> Any:
        calls.append(fn.__qualname__)
        return real(self, fn)

    monkeypatch.setattr(Cache, "_call", counted)
    return calls


def test_a_known_key_is_authenticated_and_counted_in_one_round_trip(
    client: TestClient, make_tenant: Callable[..., Headers], round_trips: list[str]
) -> None:
    acme = make_tenant("acme")
    assert client.get("/v1/files", headers=acme).status_code == 200  # the long way: key, tenant (+ fills), the hit
    assert len(round_trips) >= 3
    round_trips.clear()
    for _ in range(3):
        assert client.get("/v1/files", headers=acme).status_code == 200
    assert round_trips == ["Cache.read_and_hit.<locals>.op"] * 3


def test_the_limit_counts_each_request_once_on_either_way(
    client: TestClient, make_tenant: Callable[..., Headers]
) -> None:
    acme = make_tenant("acme", rate_limit_per_minute=3)
    assert client.get("/v1/files", headers=acme).status_code == 200  # long way (counted by `limits` itself)
    assert client.get("/v1/files", headers=acme).status_code == 200  # one round trip (counted in the pipeline)
    # When the tenant's cache entry ends (its TTL), the next request goes the long way; the hit the pipeline
    # already counted for it stands, and is not counted a second time
    cache_module.get_cache().client.delete(tenant_key("acme"))
    assert client.get("/v1/files", headers=acme).status_code == 200
    limited = client.get("/v1/files", headers=acme)
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60


def test_revoke_and_config_change_take_effect_at_once_for_a_known_key(
    client: TestClient, admin: Headers, make_tenant: Callable[..., Headers]
) -> None:
    acme, globex = make_tenant("acme"), make_tenant("globex")
    for _ in range(2):
        assert client.get("/v1/files", headers=globex).status_code == 200
        assert client.get("/v1/files", headers=acme).status_code == 200
    # A lower limit is what the next requests meet
    patched = client.patch("/v1/tenants/globex", json={"config": {"rate_limit_per_minute": 1}}, headers=admin)
    assert patched.status_code == 200
    assert [client.get("/v1/files", headers=globex).status_code for _ in range(3)].count(429) >= 2
    # A revoked key is refused on its next request
    key_id = client.get("/v1/tenants/acme/api_keys", headers=admin).json()["data"][0]["id"]
    assert client.delete(f"/v1/tenants/acme/api_keys/{key_id}", headers=admin).status_code == 200
    assert client.get("/v1/files", headers=acme).status_code == 401


def test_a_proxied_request_reads_its_cached_route_in_the_same_round_trip(
    client: TestClient, make_tenant: Callable[..., Headers], round_trips: list[str]
) -> None:
    from functions.deployments.route_cache import route_key
    from functions.local.procs import free_port
    from functions.store.cache import TOMBSTONE

    acme, model = make_tenant("acme"), "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert client.get("/v1/files", headers=acme).status_code == 200  # the key, seen: the next request is one trip
    redis = cache_module.get_cache().client
    # A cached route to a server that is not there: the proxy answers the upstream's failure
    route = {"deployment_id": "dep-gone", "model": model, "kind": "http", "url": f"http://127.0.0.1:{free_port()}"}
    redis.set(route_key("acme", model), json.dumps(route), ex=60)
    round_trips.clear()
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
    answer = client.post("/v1/chat/completions", json=body, headers=acme)
    assert answer.status_code in (502, 503, 504), answer.text
    assert round_trips[0] == "Cache.read_and_hit.<locals>.op"
    assert not [trip for trip in round_trips if trip.startswith("Cache.get_json")]  # no route read of its own
    # A tombstoned entry read with the key is a miss: the records decide (no deployment of that model here)
    redis.set(route_key("acme", model), TOMBSTONE, ex=60)
    missing = client.post("/v1/chat/completions", json=body, headers=acme)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
