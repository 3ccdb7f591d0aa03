"""Real parts for the control plane's tests: moto's server (S3, SQS), a real redis-server, and the store
(mongomock, or the server at MONGODB_URL when it is set). Each test gets an empty store and empty queues."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from functions.core import names
from functions.core.settings import Settings, get_settings
from functions.local.procs import Child, start_moto, start_redis
from functions.local.resources import LocalResources, ensure_resources
from functions.local.sqs_poller import SqsPoller
from functions.store import blobs, cache, mongo, queues
from tests.helpers.environ import environ

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
ADMIN_KEY = "test-admin-key"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Child]:
    with start_moto() as child:
        yield child


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Child]:
    with start_redis() as child:
        yield child


@pytest.fixture(scope="session")
def base_env(moto_server: Child, redis_server: Child) -> Iterator[dict[str, str]]:
    env = {
        **FAKE_AWS,
        "AWS_ENDPOINT_URL": moto_server.url,
        "REDIS_URL": redis_server.url,
        "ADMIN_API_KEY": ADMIN_KEY,
        "DATABASE_NAME": f"ministudio_test_{uuid.uuid4().hex[:8]}",
    }
    with environ(**env):
        yield env


@pytest.fixture(scope="session")
def resources(base_env: dict[str, str]) -> LocalResources:
    settings = Settings()
    s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url)
    sqs = boto3.client("sqs", endpoint_url=settings.aws_endpoint_url)
    # Short visibility so a failed message comes back within a test.
    res = ensure_resources(s3, sqs, settings, visibility_overrides={q: 1 for q in names.QUEUES})
    for field, value in res.settings_overrides().items():
        os.environ[field.upper()] = value
    return res


@pytest.fixture
def env(resources: LocalResources, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Settings]]:
    """Fresh singletons, empty store and queues; call env(NAME=value) to change settings for this test."""

    def apply(**overrides: str) -> Settings:
        for name, value in overrides.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        blobs.reset_blobs()
        cache.reset_cache()
        queues.reset_queues()
        return get_settings()

    settings = apply()
    store = mongo.connect(settings)
    for collection in store.db.list_collection_names():
        store.db[collection].delete_many({})
    mongo.reset_store(store)
    cache.get_cache().client.flushdb()
    sqs = boto3.client("sqs", endpoint_url=settings.aws_endpoint_url)
    for url in [*resources.queue_urls.values(), *resources.dlq_urls.values()]:
        _empty(sqs, url)
    yield apply
    mongo.reset_store()
    get_settings.cache_clear()


def _empty(sqs: Any, url: str) -> None:
    # PurgeQueue is limited to once a minute per queue (moto enforces it too): receive and delete instead.
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            return
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        sqs.delete_message_batch(QueueUrl=url, Entries=entries)


@pytest.fixture
def client(env: Callable[..., Settings]) -> Iterator[TestClient]:
    from functions.api.app import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def make_tenant(client: TestClient, admin: dict[str, str]) -> Callable[..., dict[str, str]]:
    """Create a tenant (and a key) through the admin API; returns the Authorization header for it."""

    def make(code: str, **config: Any) -> dict[str, str]:
        created = client.post("/v1/tenants", json={"client_code": code, "config": config}, headers=admin)
        assert created.status_code == 201, created.text
        key = client.post(f"/v1/tenants/{code}/api_keys", json={}, headers=admin)
        assert key.status_code == 201, key.text
        return {"Authorization": f"Bearer {key.json()['key']}"}

    return make


@pytest.fixture
def s3(env: Callable[..., Settings]) -> Any:
    return boto3.client("s3", endpoint_url=get_settings().aws_endpoint_url)


def _drainer(resources: LocalResources, queue: str, handler: Callable[..., Any]) -> Callable[[], int]:
    """Run a worker over everything queued, the way Lambda's event source would; returns messages seen."""
    sqs = boto3.client("sqs", endpoint_url=get_settings().aws_endpoint_url)
    poller = SqsPoller(sqs, resources.url(queue), handler, wait_seconds=0)
    return lambda: poller.drain(timeout=60)


@pytest.fixture
def ingest(resources: LocalResources, env: Callable[..., Settings]) -> Callable[[], int]:
    from functions.workers import ingest as worker

    return _drainer(resources, names.INGEST_QUEUE, worker.handler)


@pytest.fixture
def status_worker(resources: LocalResources, env: Callable[..., Settings]) -> Callable[[], int]:
    from functions.workers import status as worker

    return _drainer(resources, names.STATUS_QUEUE, worker.handler)


@pytest.fixture
def dispatched(resources: LocalResources, env: Callable[..., Settings]) -> Callable[[], list[dict[str, Any]]]:
    """Take the dispatch messages sent so far off the queue (for tests that check what the API asked for)."""
    sqs = boto3.client("sqs", endpoint_url=get_settings().aws_endpoint_url)

    def take() -> list[dict[str, Any]]:
        import json

        bodies = []
        url = resources.url(names.DISPATCH_QUEUE)
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for m in messages:
                bodies.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return bodies

    return take
