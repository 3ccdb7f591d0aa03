"""The embedded document store of the local platform: montydb (MongoDB's API) on its SQLite storage, on disk.

montydb keeps MongoDB's query and update language and writes every acknowledged change to SQLite (WAL, and
`synchronous=FULL`, so a `kill -9` or a power cut keeps what was acknowledged). Two things it leaves to its
user, which this module adds without touching the documents it stores:
- one process-wide lock around each operation: montydb's SQLite connection object is shared and its
  read-modify-write updates are not atomic across threads, and the repositories' conditional transitions
  (`find_one_and_update` on the expected status) must be;
- the unique indexes the repositories declare (montydb's `create_index` is a no-op), checked under that lock on
  insert and upsert, and its duplicate-key error raised as pymongo's, which the repositories catch.
Reads are materialised inside the lock, so a cursor never reads while another thread writes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_lock = threading.RLock()


class _Cursor:
    """`find(...).sort(...).limit(...)`, run under the lock when iterated."""

    def __init__(self, col: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._col, self._args, self._kwargs = col, args, kwargs
        self._sort: list[tuple[str, int]] | None = None
        self._limit = 0

    def sort(self, key: Any, direction: int | None = None) -> _Cursor:
        self._sort = [(key, direction or 1)] if isinstance(key, str) else list(key)
        return self

    def limit(self, n: int) -> _Cursor:
        self._limit = n
        return self

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with _lock:
            cursor = self._col.find(*self._args, **self._kwargs)
            if self._sort:
                cursor = cursor.sort(self._sort)
            if self._limit:
                cursor = cursor.limit(self._limit)
            return iter(list(cursor))


class Collection:
    def __init__(self, col: Any) -> None:
        self._col = col
        self._unique: list[tuple[list[str], dict[str, Any] | None]] = []

    @property
    def name(self) -> str:
        return str(self._col.name)

    def create_index(self, keys: Any, unique: bool = False, **kwargs: Any) -> str:
        fields = [keys] if isinstance(keys, str) else [k for k, _ in keys]
        if unique and (fields, kwargs.get("partialFilterExpression")) not in self._unique:
            self._unique.append((fields, kwargs.get("partialFilterExpression")))
        return "_".join(fields)

    def _check_unique(self, doc: dict[str, Any]) -> None:
        from pymongo.errors import DuplicateKeyError

        for fields, partial in self._unique:
            if partial and not all(_matches_type(doc.get(f), partial.get(f)) for f in partial):
                continue
            query = {f: doc.get(f) for f in fields}
            other = self._col.find_one(query, {"_id": 1})
            if other is not None and other["_id"] != doc.get("_id"):
                raise DuplicateKeyError(f"E11000 duplicate key error: {query}", 11000)

    def insert_one(self, doc: dict[str, Any]) -> Any:
        with _lock, _pymongo_errors():
            self._check_unique(doc)
            return self._col.insert_one(doc)

    def update_one(self, query: dict[str, Any], update: dict[str, Any], upsert: bool = False) -> Any:
        update = _without_id(query, update)
        with _lock, _pymongo_errors():
            if upsert and self._unique and self._col.find_one(query, {"_id": 1}) is None:
                self._check_unique({**query, **update.get("$setOnInsert", {}), **update.get("$set", {})})
            return self._col.update_one(query, update, upsert=upsert)

    def find_one_and_update(self, query: dict[str, Any], update: dict[str, Any], **kwargs: Any) -> Any:
        with _lock, _pymongo_errors():
            return self._col.find_one_and_update(query, _without_id(query, update), **kwargs)

    def find(self, *args: Any, **kwargs: Any) -> _Cursor:
        return _Cursor(self._col, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._col, name)
        if not callable(method):
            return method

        def locked(*args: Any, **kwargs: Any) -> Any:
            with _lock, _pymongo_errors():
                return method(*args, **kwargs)

        return locked


class Database:
    def __init__(self, client: Any, name: str) -> None:
        self._client, self._db, self.name = client, client[name], name
        self._cols: dict[str, Collection] = {}

    def __getitem__(self, name: str) -> Collection:
        with _lock:
            if name not in self._cols:
                self._cols[name] = Collection(self._db[name])
            return self._cols[name]

    def list_collection_names(self) -> list[str]:
        with _lock:
            return list(self._db.list_collection_names())

    def command(self, name: str) -> dict[str, Any]:
        if name != "ping":
            raise NotImplementedError(f"the embedded store answers only 'ping', not {name!r}")
        with _lock:
            self._db.list_collection_names()  # reads the repository: a broken one fails here
        return {"ok": 1.0}


def open_database(directory: Path, name: str) -> Database:
    """The database `name` in montydb's SQLite repository at `directory` (created when missing)."""
    from montydb import MontyClient, set_storage

    directory.mkdir(parents=True, exist_ok=True)
    with _lock:
        if not (directory / "monty.storage.cfg").exists():
            set_storage(str(directory), storage="sqlite", use_bson=True, check_same_thread=False)
        client = MontyClient(str(directory), synchronous="FULL")
    return Database(client, name)


class _pymongo_errors:
    """montydb raises its own DuplicateKeyError; the repositories catch pymongo's."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        from montydb.errors import DuplicateKeyError as MontyDuplicate
        from pymongo.errors import DuplicateKeyError

        if isinstance(exc, MontyDuplicate):
            raise DuplicateKeyError(str(exc), 11000) from exc


def _without_id(query: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """MongoDB accepts an update that sets `_id` to the value the query already pins (as `$setOnInsert` of a whole
    record does); montydb refuses any mention of `_id`, so it is left out when it is the queried one."""
    pinned = query.get("_id")
    if pinned is None or isinstance(pinned, dict):
        return update
    out = {}
    for op, fields in update.items():
        if isinstance(fields, dict) and fields.get("_id", object()) == pinned:
            fields = {k: v for k, v in fields.items() if k != "_id"}
        out[op] = fields
    return out


def _matches_type(value: Any, condition: Any) -> bool:
    if isinstance(condition, dict) and condition.get("$type") == "string":
        return isinstance(value, str)
    return True
