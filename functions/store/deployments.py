"""Repositories for deployments and the inference request log."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from functions.core import names
from functions.core.models import Deployment, DeploymentStatus, InferenceLog
from functions.store.paging import Page
from functions.store.repo import Repo, StatefulRepo

LIVE = [s for s in DeploymentStatus if s.live]


class DeploymentRepo(StatefulRepo[Deployment]):
    def __init__(self, db: Any) -> None:
        super().__init__(db, names.DEPLOYMENTS, Deployment)

    def page(self, client_code: str, after: str | None, limit: int) -> Page[Deployment]:
        return self.paginate({"client_code": client_code}, after, limit)

    def live_for_model(self, client_code: str, model: str) -> list[Deployment]:
        """The tenant's live deployments serving `model`, ready ones first, newest first."""
        found = self.find({"client_code": client_code, "model": model, "status": {"$in": LIVE}})
        return sorted(found, key=lambda d: (d.status != DeploymentStatus.ready, -d.seq))

    def hosts_for(self, base_model: str) -> list[Deployment]:
        """Ready deployments with a server of their own for `base_model`: where an adapter can ride along."""
        query = {"base_model": base_model, "dedicated": True, "status": DeploymentStatus.ready.value}
        return self.find(query, sort=[("seq", 1)])

    def riders(self, host_id: str) -> list[Deployment]:
        """Live adapter deployments that depend on the host's server."""
        return self.find({"host_id": host_id, "status": {"$in": [*LIVE, DeploymentStatus.deleting]}})

    def in_status(self, statuses: Iterable[str], limit: int = 500) -> list[Deployment]:
        return self.find({"status": {"$in": list(statuses)}}, sort=[("updated_at", 1)], limit=limit)


class InferenceLogRepo(Repo[InferenceLog]):
    def __init__(self, db: Any) -> None:
        super().__init__(db, names.INFERENCE_LOGS, InferenceLog)

    def add(self, entry: InferenceLog) -> None:
        self.insert(entry)

    def page(self, client_code: str, after: str | None, limit: int, model: str | None = None) -> Page[InferenceLog]:
        query: dict[str, Any] = {"client_code": client_code}
        if model:
            query["model"] = model
        return self.paginate(query, after, limit)

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
