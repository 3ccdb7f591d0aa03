"""`Repo[R]`: one collection of one record type. Every read comes back validated as `R`, so the repositories say
only which documents they want; the documents themselves are stored exactly as `Record.doc()` writes them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from functions.core.errors import NotFound
from functions.core.models import Record, now
from functions.store.paging import Page, after_update, page

R = TypeVar("R", bound=Record)
Sort = list[tuple[str, int]]


class Repo(Generic[R]):
    def __init__(self, db: Any, collection: str, model: type[R]) -> None:
        self.col = db[collection]
        self.model = model

    def parse(self, doc: dict[str, Any]) -> R:
        return self.model.model_validate(doc)

    def _parsed(self, doc: dict[str, Any] | None) -> R | None:
        return self.model.model_validate(doc) if doc else None

    def insert(self, record: R) -> R:
        self.col.insert_one(record.doc())
        return record

    def get(self, record_id: str, client_code: str | None = None) -> R | None:
        """By id; with `client_code`, only the tenant's own (another tenant's record reads as missing)."""
        query: dict[str, Any] = {"_id": record_id}
        if client_code is not None:
            query["client_code"] = client_code
        return self._parsed(self.col.find_one(query))

    def own(self, record_id: str, client_code: str, what: str, param: str) -> R:
        """The tenant's own record, or the 404 that names `what` it is and the `param` that asked for it."""
        found = self.get(record_id, client_code)
        if found is None:
            raise NotFound(f"{what} {record_id!r} not found", param=param)
        return found

    def find_one(self, query: dict[str, Any]) -> R | None:
        return self._parsed(self.col.find_one(query))

    def find(self, query: dict[str, Any], sort: Sort | None = None, limit: int = 0) -> list[R]:
        cursor = self.col.find(query)
        if sort:
            cursor = cursor.sort(sort)
        if limit:
            cursor = cursor.limit(limit)
        return [self.model.model_validate(d) for d in cursor]

    def paginate(self, query: dict[str, Any], after: str | None, limit: int, order: str = "desc") -> Page[R]:
        return page(self.col, query, after, limit, order, self.parse)

    def modify(self, query: dict[str, Any], update: dict[str, Any]) -> R | None:
        """`find_one_and_update`, answering the record as it is after the update (None when nothing matched)."""
        return self._parsed(self.col.find_one_and_update(query, update, return_document=after_update()))

    def delete(self, record_id: str, client_code: str) -> bool:
        return bool(self.col.delete_one({"_id": record_id, "client_code": client_code}).deleted_count == 1)


class StatefulRepo(Repo[R]):
    """Records with a status machine: every change is conditional on the expected current status and stamps
    `updated_at`, so a duplicate or late message can never move a record backwards or twice."""

    def transition(self, record_id: str, expected: Iterable[str], status: str, **fields: Any) -> R | None:
        """Move from one of the expected statuses; None when it was not in one (someone else moved it)."""
        return self.update(record_id, expected, status=status, **fields)

    def update(self, record_id: str, expected: Iterable[str], **fields: Any) -> R | None:
        query = {"_id": record_id, "status": {"$in": list(expected)}}
        return self.modify(query, {"$set": {"updated_at": now(), **fields}})
