"""Repositories for fine-tuning jobs, their events and checkpoints, and fine-tuned models."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from functions.core import names
from functions.core.errors import Conflict
from functions.core.models import Checkpoint, FineTunedModel, Job, JobEvent
from functions.store.paging import Page
from functions.store.repo import Repo, StatefulRepo

FINGERPRINT = "request_fingerprint"  # stored beside the job's fields: what its Idempotency-Key stands for


class JobRepo(StatefulRepo[Job]):
    def __init__(self, db: Any) -> None:
        super().__init__(db, names.JOBS, Job)

    def create(self, job: Job, fingerprint: dict[str, str] | None = None) -> tuple[Job, bool]:
        """Insert; with an idempotency key already used by the tenant, return that job instead (False).

        `fingerprint` (hashes of the request's parameters) is stored with the job, for `by_idempotency_key`."""
        from pymongo.errors import DuplicateKeyError

        doc = job.doc()
        if fingerprint is not None:
            doc[FINGERPRINT] = fingerprint
        try:
            self.col.insert_one(doc)
            return job, True
        except DuplicateKeyError:
            if job.idempotency_key is None:
                raise Conflict(f"job {job.id!r} already exists") from None
            existing = self.by_idempotency_key(job.client_code, job.idempotency_key)
            if existing is None:  # pragma: no cover - the duplicate was deleted in between
                raise
            return existing[0], False

    def by_idempotency_key(self, client_code: str, key: str) -> tuple[Job, dict[str, str] | None] | None:
        """The tenant's job created with this key, and the fingerprint of its request (None for older jobs)."""
        doc = self.col.find_one({"client_code": client_code, "idempotency_key": key})
        return (self.parse(doc), doc.get(FINGERPRINT)) if doc else None

    def page(
        self, client_code: str, after: str | None, limit: int, metadata: dict[str, str] | None = None
    ) -> Page[Job]:
        query: dict[str, Any] = {"client_code": client_code}
        for key, value in (metadata or {}).items():
            query[f"metadata.{key}"] = value
        return self.paginate(query, after, limit)

    def all_for(self, client_code: str) -> list[Job]:
        return self.find({"client_code": client_code}, sort=[("seq", -1)])

    def in_status(self, statuses: Iterable[str], updated_before: int | None = None, limit: int = 500) -> list[Job]:
        query: dict[str, Any] = {"status": {"$in": list(statuses)}}
        if updated_before is not None:
            query["updated_at"] = {"$lt": updated_before}
        return self.find(query, sort=[("updated_at", 1)], limit=limit)

    def waiting_for(self, file_id: str) -> list[Job]:
        return self.find({"status": "validating_files", "training_file": file_id})


class EventRepo(Repo[JobEvent]):
    def __init__(self, db: Any) -> None:
        super().__init__(db, names.JOB_EVENTS, JobEvent)

    def add(self, event: JobEvent) -> None:
        """Idempotent by id: callers derive ids from what happened, so a retried step adds no second event."""
        self.col.update_one({"_id": event.id}, {"$setOnInsert": event.doc()}, upsert=True)

    def page(self, job_id: str, after: str | None, limit: int) -> Page[JobEvent]:
        return self.paginate({"job_id": job_id}, after, limit)


class CheckpointRepo(Repo[Checkpoint]):
    def __init__(self, db: Any) -> None:
        super().__init__(db, names.CHECKPOINTS, Checkpoint)

    def add(self, checkpoint: Checkpoint) -> bool:
        result = self.col.update_one({"_id": checkpoint.id}, {"$setOnInsert": checkpoint.doc()}, upsert=True)
        return result.upserted_id is not None

    def page(self, job_id: str, after: str | None, limit: int) -> Page[Checkpoint]:
        return self.paginate({"job_id": job_id}, after, limit)

    def delete_for_job(self, job_id: str, client_code: str) -> int:
        """Forget a job's checkpoints once their files are deleted (with the fine-tuned model they belong to)."""
        return int(self.col.delete_many({"job_id": job_id, "client_code": client_code}).deleted_count)


class ModelRepo(Repo[FineTunedModel]):
    def __init__(self, db: Any) -> None:
        super().__init__(db, names.MODELS, FineTunedModel)

    def add(self, model: FineTunedModel) -> None:
        self.col.update_one({"_id": model.id}, {"$setOnInsert": model.doc()}, upsert=True)

    def list(self, client_code: str) -> list[FineTunedModel]:
        return self.find({"client_code": client_code}, sort=[("created_at", 1)])
