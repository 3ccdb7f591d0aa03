"""The server's own request log in SQLite (seed 004's `/logs`): the server never touches the control plane's store."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    route TEXT NOT NULL,
    model TEXT NOT NULL,
    adapter TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    status TEXT NOT NULL,
    finish_reason TEXT,
    user TEXT,
    timestamp TEXT NOT NULL
)
"""
# Columns added after the first release (tabular predictions: the tenant, the input and the output as JSON); an
# existing file gains them on open.
_ADDED_COLUMNS = {"tenant": "TEXT", "input_data": "TEXT", "output": "TEXT"}


@dataclass
class LogEntry:
    request_id: str
    route: str
    model: str
    adapter: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    status: str  # "success" or the error type
    finish_reason: str | None = None
    user: str | None = None
    timestamp: str = ""
    tenant: str | None = None
    input_data: str | None = None
    output: str | None = None


class RequestLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the event loop's callbacks; the lock keeps writes from interleaving.
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            if str(path) != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            present = {row["name"] for row in self._db.execute("PRAGMA table_info(requests)")}
            for name, kind in _ADDED_COLUMNS.items():
                if name not in present:
                    self._db.execute(f"ALTER TABLE requests ADD COLUMN {name} {kind}")
            self._db.execute("CREATE INDEX IF NOT EXISTS requests_by_tenant ON requests (tenant, id)")
            self._db.commit()

    def add(self, entry: LogEntry) -> None:
        row = asdict(entry)
        row["timestamp"] = row["timestamp"] or datetime.now(UTC).isoformat().replace("+00:00", "Z")
        columns = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        with self._lock:
            self._db.execute(f"INSERT INTO requests ({columns}) VALUES ({marks})", row)  # noqa: S608 (fixed names)
            self._db.commit()

    def recent(self, limit: int, tenant: str | None = None) -> list[dict[str, Any]]:
        """The latest entries, newest first; with `tenant`, only that tenant's."""
        where, args = ("WHERE tenant = ? ", (tenant, limit)) if tenant is not None else ("", (limit,))
        query = f"SELECT * FROM requests {where}ORDER BY id DESC LIMIT ?"  # noqa: S608 (fixed text)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [dict(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
