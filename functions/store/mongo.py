"""MongoDB repositories. MONGODB_URL selects a real server; unset, the embedded montydb store under the data
directory (durable, functions/store/embedded.py), or with no data directory an in-process mongomock (tests).

Every status change is a conditional `find_one_and_update` on the expected current status, so a duplicate or
late message can never move a record backwards or twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from functions.core import names
from functions.core.errors import Conflict
from functions.core.lazy import Lazy
from functions.core.models import ApiKey, Dataset, Tenant, Upload, now
from functions.core.observability import log
from functions.core.settings import Settings, get_settings
from functions.store.deployments import DeploymentRepo, InferenceLogRepo
from functions.store.jobs import CheckpointRepo, EventRepo, JobRepo, ModelRepo
from functions.store.paging import Page
from functions.store.repo import Repo


class TenantRepo(Repo[Tenant]):
    """`_id` is the client_code."""

    def __init__(self, db: Any) -> None:
        super().__init__(db, names.TENANTS, Tenant)

    def create(self, tenant: Tenant) -> Tenant:
        from pymongo.errors import DuplicateKeyError

        try:
            return self.insert(tenant)
        except DuplicateKeyError:
            raise Conflict(f"tenant {tenant.id!r} already exists", param="client_code") from None

    def list(self) -> list[Tenant]:
        return self.find({}, sort=[("_id", 1)])

    def update_config(self, client_code: str, config: dict[str, Any]) -> Tenant | None:
        return self.modify({"_id": client_code}, {"$set": {f"config.{k}": v for k, v in config.items()}})


class ApiKeyRepo(Repo[ApiKey]):
    def __init__(self, db: Any) -> None:
        super().__init__(db, names.API_KEYS, ApiKey)

    def by_hash(self, key_hash: str) -> ApiKey | None:
        return self.find_one({"key_hash": key_hash, "revoked_at": None})

    def list(self, client_code: str) -> list[ApiKey]:
        return self.find({"client_code": client_code}, sort=[("created_at", 1)])

    def revoke(self, client_code: str, key_id: str) -> ApiKey | None:
        """Revoke once: a key already revoked keeps its first `revoked_at` (the audit trail's answer)."""
        query = {"_id": key_id, "client_code": client_code, "revoked_at": None}
        return self.modify(query, {"$set": {"revoked_at": now()}}) or self.get(key_id, client_code)


class DatasetRepo(Repo[Dataset]):
    def __init__(self, db: Any) -> None:
        super().__init__(db, names.DATASETS, Dataset)

    def insert_once(self, dataset: Dataset) -> tuple[Dataset, bool]:
        """Insert unless a record with this id exists; returns the stored record and whether it was new."""
        result = self.col.update_one({"_id": dataset.id}, {"$setOnInsert": dataset.doc()}, upsert=True)
        return self.parse(self.col.find_one({"_id": dataset.id})), result.upserted_id is not None

    def by_key(self, bucket: str, key: str) -> Dataset | None:
        return self.find_one({"bucket": bucket, "s3_key": key})

    def by_dfs_path(self, client_code: str, path: str) -> Dataset | None:
        return self.find_one({"client_code": client_code, "dfs_path": path})

    def set_dfs_path(self, dataset_id: str, path: str) -> None:
        """Remember the DFS file a dataset was registered from (the file is registered once, not per reference)."""
        self.col.update_one({"_id": dataset_id}, {"$set": {"dfs_path": path}})

    def page(self, client_code: str, purpose: str | None, after: str | None, limit: int, order: str) -> Page[Dataset]:
        query: dict[str, Any] = {"client_code": client_code}
        if purpose:
            query["purpose"] = purpose
        return self.paginate(query, after, limit, order)

    def transition(self, dataset_id: str, expected: Iterable[str], status: str, **fields: Any) -> Dataset | None:
        query = {"_id": dataset_id, "status": {"$in": list(expected)}}
        return self.modify(query, {"$set": {"status": status, **fields}})


class UploadRepo(Repo[Upload]):
    def __init__(self, db: Any) -> None:
        super().__init__(db, names.UPLOADS, Upload)

    def add_part(self, upload_id: str, part: dict[str, Any]) -> Upload | None:
        """Append a part while the upload is still pending."""
        return self.modify({"_id": upload_id, "status": "pending"}, {"$push": {"parts": part}})

    def transition(self, upload_id: str, expected: str, status: str, **fields: Any) -> Upload | None:
        return self.modify({"_id": upload_id, "status": expected}, {"$set": {"status": status, **fields}})


class Store:
    def __init__(self, db: Any) -> None:
        self.db = db
        self.tenants = TenantRepo(db)
        self.api_keys = ApiKeyRepo(db)
        self.datasets = DatasetRepo(db)
        self.uploads = UploadRepo(db)
        self.jobs = JobRepo(db)
        self.events = EventRepo(db)
        self.checkpoints = CheckpointRepo(db)
        self.models = ModelRepo(db)
        self.deployments = DeploymentRepo(db)
        self.inference_logs = InferenceLogRepo(db)

    def ensure_indexes(self) -> None:
        self.api_keys.col.create_index("key_hash", unique=True)
        self.api_keys.col.create_index("client_code")
        self.datasets.col.create_index([("client_code", 1), ("seq", -1)])
        self.datasets.col.create_index([("bucket", 1), ("s3_key", 1)], unique=True)
        self.uploads.col.create_index([("client_code", 1), ("seq", -1)])
        self.jobs.col.create_index([("client_code", 1), ("seq", -1)])
        self.jobs.col.create_index([("status", 1), ("updated_at", 1)])
        self.jobs.col.create_index(
            [("client_code", 1), ("idempotency_key", 1)],
            unique=True,
            partialFilterExpression={"idempotency_key": {"$type": "string"}},
        )
        self.events.col.create_index([("job_id", 1), ("seq", -1)])
        self.checkpoints.col.create_index([("job_id", 1), ("seq", -1)])
        self.models.col.create_index("client_code")
        self.deployments.col.create_index([("client_code", 1), ("seq", -1)])
        self.deployments.col.create_index([("client_code", 1), ("model", 1), ("status", 1)])
        self.deployments.col.create_index([("status", 1), ("updated_at", 1)])
        self.inference_logs.col.create_index([("client_code", 1), ("seq", -1)])
        self.inference_logs.col.create_index([("client_code", 1), ("created_at", 1)])

    def ping(self) -> bool:
        try:
            self.db.command("ping")
            return True
        except Exception:
            return False


def connect(settings: Settings) -> Store:
    if settings.mongodb_url:
        from pymongo import MongoClient

        client: Any = MongoClient(
            settings.mongodb_url, serverSelectionTimeoutMS=5000, appname="ministudio", tz_aware=False
        )
        db: Any = client[settings.database_name]
    elif settings.ministudio_data_dir:
        from functions.store.embedded import open_database

        db = open_database(Path(settings.ministudio_data_dir) / "documents", settings.database_name)
    else:
        import mongomock

        db = mongomock.MongoClient()[settings.database_name]
        log("warning", "MongoDB: in-process store (mongomock), not durable; set MONGODB_URL or MINISTUDIO_DATA_DIR")
    store = Store(db)
    store.ensure_indexes()
    return store


_store = Lazy(lambda: connect(get_settings()))


def get_store() -> Store:
    return _store.get()


def reset_store(store: Store | None = None) -> None:
    """Replace the process-wide store (tests, and the local runtime after it sets MONGODB_URL)."""
    _store.reset(store)
