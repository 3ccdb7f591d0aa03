"""Cursor pagination (OpenAI's `after` + `limit`) and the return-document option, shared by the repositories."""

from __future__ import annotations

from typing import Any


def after_update() -> Any:
    from pymongo import ReturnDocument

    return ReturnDocument.AFTER


class Page:
    """One page of a cursor-paginated list (OpenAI's `after` + `limit`)."""

    def __init__(self, items: list[dict[str, Any]], has_more: bool) -> None:
        self.items = items
        self.has_more = has_more


def page(collection: Any, query: dict[str, Any], after: str | None, limit: int, order: str) -> Page:
    """Records sort by `seq` (creation time in ns); `after` names the last id of the previous page."""
    direction = -1 if order == "desc" else 1
    if after:
        anchor = collection.find_one({**query, "_id": after}, {"seq": 1})
        if anchor is not None:
            query = {**query, "seq": {"$lt" if direction == -1 else "$gt": anchor["seq"]}}
    cursor = collection.find(query).sort([("seq", direction), ("_id", direction)]).limit(limit + 1)
    items = list(cursor)
    return Page(items[:limit], len(items) > limit)
