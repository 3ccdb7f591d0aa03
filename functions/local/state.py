"""The local platform's data directory (`MINISTUDIO_DATA_DIR`, `make run`'s default `.ministudio/data`).

Every part keeps its state under one folder, each in the format its own engine writes:

    documents/            montydb's SQLite repository (functions/store/embedded.py)
    objects/recording.jsonl   moto's recorder: S3's writes, replayed at start (functions/local/moto_recording.py)
    redis/                redis-server's append-only file
    runs/  serving/  prometheus/   the local backend's trainer runs, inference servers and Prometheus
    credentials.json      the admin, demo and inference-server keys (mode 0600)

`make run FRESH=1` (`ministudio run --fresh`) empties it first; nothing else ever deletes it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = ".ministudio/data"


@dataclass(frozen=True)
class DataDir:
    root: Path

    @classmethod
    def at(cls, path: str | Path) -> DataDir:
        return cls(Path(path).expanduser().resolve())

    @property
    def documents(self) -> Path:
        return self.root / "documents"

    @property
    def recording(self) -> Path:
        return self.root / "objects" / "recording.jsonl"

    @property
    def redis(self) -> Path:
        return self.root / "redis"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials.json"

    def folder(self, name: str) -> Path:
        return self.root / name

    def is_new(self) -> bool:
        return not self.documents.exists() and not self.recording.exists()

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # keys, datasets and adapters: the user's alone

    def wipe(self) -> None:
        """FRESH=1: remove everything this directory holds (only what the platform itself writes there)."""
        if self.root.exists():
            shutil.rmtree(self.root)


class Credentials:
    """The keys a restarted platform must keep: the admin key, the demo tenant's key and the inference servers' key.

    Written atomically (temporary file, fsync, rename) with mode 0600, so a crash leaves the old file or the new
    one, and other users of the machine cannot read it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values: dict[str, str] = {}
        if path.exists():
            try:
                loaded: Any = json.loads(path.read_text())
                self.values = (
                    {k: v for k, v in loaded.items() if isinstance(v, str)} if isinstance(loaded, dict) else {}
                )
            except (OSError, ValueError):
                self.values = {}  # unreadable: new keys are issued, and the old ones stay revocable in the store

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def get_or_create(self, name: str, prefix: str) -> str:
        if name not in self.values:
            self.values[name] = prefix + secrets.token_urlsafe(24)
            self.save()
        return self.values[name]

    def set(self, name: str, value: str) -> None:
        if self.values.get(name) != value:
            self.values[name] = value
            self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.values, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
