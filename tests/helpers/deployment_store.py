"""Stores for the deployment and proxy unit tests: a document store with two tenants (acme, globex) that each own a
fine-tuned adapter of BASE, and a stand-in for the store's usage log that keeps what the proxy logs."""

from __future__ import annotations

from typing import Any

import mongomock

from functions.core.models import FineTunedModel, Tenant
from functions.store.mongo import Store
from tests.helpers.tiny_models import BASE


def fine_tuned_id(code: str) -> str:
    """The id of `code`'s adapter in `two_tenants()`."""
    return f"ft:{BASE}:{code}:s:ftjob-{code}"


def two_tenants() -> Store:
    store = Store(mongomock.MongoClient()["t"])
    for code in ("acme", "globex"):
        store.tenants.create(Tenant(id=code))
        adapter_uri = f"s3://b/artifacts/{code}/ftjob-{code}/adapter/"
        model = FineTunedModel(
            id=fine_tuned_id(code), client_code=code, base_model=BASE, job_id=f"ftjob-{code}", adapter_uri=adapter_uri
        )
        store.models.add(model)
    return store


class Logs:
    def __init__(self) -> None:
        self.entries: list[Any] = []

    def add(self, entry: Any) -> None:
        self.entries.append(entry)


class LogStore:
    """What the proxy needs of the store (`inference_logs.add`), keeping the entries."""

    def __init__(self) -> None:
        self.inference_logs = Logs()
