"""Repositories for deployments and the inference request log."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from functions.core import names
from functions.core.models import Deployment, DeploymentStatus, InferenceLog, now
from functions.store.paging import Page, after_update, page

LIVE = [DeploymentStatus.pending, DeploymentStatus.deploying, DeploymentStatus.ready]


class DeploymentRepo:
    def __init__(self, db: Any) -> None:
        self.col = db[names.DEPLOYMENTS]

    def insert(self, deployment: Deployment) -> Deployment:
        self.col.insert_one(deployment.doc())
        return deployment

    def get(self, deployment_id: str, client_code: str | None = None) -> Deployment | None:
        query: dict[str, Any] = {"_id": deployment_id}
        if client_code is not None:
            query["client_code"] = client_code
        doc = self.col.find_one(query)
        return Deployment.model_validate(doc) if doc else None

    def page(self, client_code: str, after: str | None, limit: int) -> Page:
        return page(self.col, {"client_code": client_code}, after, limit, "desc")

    def live_for_model(self, client_code: str, model: str) -> list[Deployment]:
        """The tenant's live deployments serving `model`, ready ones first, newest first."""
        docs = self.col.find({"client_code": client_code, "model": model, "status": {"$in": LIVE}})
        found = [Deployment.model_validate(d) for d in docs]
        return sorted(found, key=lambda d: (d.status != DeploymentStatus.ready, -d.seq))

    def hosts_for(self, base_model: str) -> list[Deployment]:
        """Ready deployments with a server of their own for `base_model`: where an adapter can ride along."""
        docs = self.col.find(
            {"base_model": base_model, "dedicated": True, "status": DeploymentStatus.ready.value}
        ).sort("seq", 1)
        return [Deployment.model_validate(d) for d in docs]

    def riders(self, host_id: str) -> list[Deployment]:
        """Live adapter deployments that depend on the host's server."""
        docs = self.col.find({"host_id": host_id, "status": {"$in": [*LIVE, DeploymentStatus.deleting]}})
        return [Deployment.model_validate(d) for d in docs]

    def in_status(self, statuses: Iterable[str], limit: int = 500) -> list[Deployment]:
        docs = self.col.find({"status": {"$in": list(statuses)}}).sort("updated_at", 1).limit(limit)
        return [Deployment.model_validate(d) for d in docs]

    def transition(self, deployment_id: str, expected: Iterable[str], status: str, **fields: Any) -> Deployment | None:
        doc = self.col.find_one_and_update(
            {"_id": deployment_id, "status": {"$in": list(expected)}},
            {"$set": {"status": status, "updated_at": now(), **fields}},
            return_document=after_update(),
        )
        return Deployment.model_validate(doc) if doc else None

    def update(self, deployment_id: str, expected: Iterable[str], **fields: Any) -> Deployment | None:
        doc = self.col.find_one_and_update(
            {"_id": deployment_id, "status": {"$in": list(expected)}},
            {"$set": {"updated_at": now(), **fields}},
            return_document=after_update(),
        )
        return Deployment.model_validate(doc) if doc else None


class InferenceLogRepo:
    def __init__(self, db: Any) -> None:
        self.col = db[names.INFERENCE_LOGS]

    def add(self, entry: InferenceLog) -> None:
        self.col.insert_one(entry.doc())

    def page(self, client_code: str, after: str | None, limit: int, model: str | None = None) -> Page:
        query: dict[str, Any] = {"client_code": client_code}
        if model:
            query["model"] = model
        return page(self.col, query, after, limit, "desc")

    def usage(self, client_code: str, start: int | None, end: int | None) -> list[dict[str, Any]]:
        """Per-model totals for the tenant, computed in Python so mongomock and MongoDB agree exactly."""
        query: dict[str, Any] = {"client_code": client_code}
        window: dict[str, int] = {}
        if start is not None:
            window["$gte"] = start
        if end is not None:
            window["$lt"] = end
        if window:
            query["created_at"] = window
        totals: dict[str, dict[str, Any]] = {}
        fields = {"model": 1, "status_code": 1, "prompt_tokens": 1, "completion_tokens": 1, "latency_ms": 1}
        for doc in self.col.find(query, fields):
            row = totals.setdefault(
                doc["model"],
                {
                    "model": doc["model"],
                    "requests": 0,
                    "errors": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "latency_ms_total": 0.0,
                },
            )
            row["requests"] += 1
            row["errors"] += int(doc.get("status_code", 200) >= 400)
            row["prompt_tokens"] += int(doc.get("prompt_tokens") or 0)
            row["completion_tokens"] += int(doc.get("completion_tokens") or 0)
            row["latency_ms_total"] += float(doc.get("latency_ms") or 0.0)
        return sorted(totals.values(), key=lambda r: r["model"])
