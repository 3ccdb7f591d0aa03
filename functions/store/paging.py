"""Cursor pagination (OpenAI's `after` + `limit`) and the return-document option, shared by the repositories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def after_update() -> Any:
    from pymongo import ReturnDocument

    return ReturnDocument.AFTER


class Page(Generic[T]):
    """One page of a cursor-paginated list (OpenAI's `after` + `limit`): `data` holds the records, typed.

    `items` keeps the documents as stored, for callers that still read them raw (functions/deployments/routing.py)."""

    def __init__(self, data: list[T], has_more: bool, items: list[dict[str, Any]] | None = None) -> None:
        self.data = data
        self.has_more = has_more
        self.items = items if items is not None else []


def page(
    collection: Any,
    query: dict[str, Any],
    after: str | None,
    limit: int,
    order: str,
    parse: Callable[[dict[str, Any]], T],
) -> Page[T]:
    """Records sort by `seq` (creation time in ns); `after` names the last id of the previous page."""
    direction = -1 if order == "desc" else 1
    if after:
        anchor = collection.find_one({**query, "_id": after}, {"seq": 1})
        if anchor is not None:
            query = {**query, "seq": {"$lt" if direction == -1 else "$gt": anchor["seq"]}}
    cursor = collection.find(query).sort([("seq", direction), ("_id", direction)]).limit(limit + 1)
    docs = list(cursor)
    items = docs[:limit]
    return Page([parse(d) for d in items], len(docs) > limit, items)
