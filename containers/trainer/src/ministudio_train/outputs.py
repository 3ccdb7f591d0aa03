"""Everything the trainer reports, written under one output prefix (an s3:// prefix or a local directory).

The control plane learns about a job only from these objects (S3 events on `artifacts/`), so the order matters:
progress and checkpoints while running, `adapter/` at the end, and `result.json` last of all. On S3, progress and
metrics are re-put at most every `min_interval` seconds (each PUT costs money and fires an event); everything is
staged in a local directory first, so a local output and an S3 output hold the same files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ministudio_common import s3uri

log = logging.getLogger("ministudio_train")
INTERVAL_ENV = "MINISTUDIO_PROGRESS_INTERVAL"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _write_atomic(path: Path, data: bytes) -> None:
    # Readers (the local status poller, a user tailing the directory) must never see half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Outputs:
    def __init__(
        self,
        output: str,
        staging: Path,
        model_dir: str | None = None,
        checkpoint_dir: str | None = None,
        min_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.remote = s3uri.is_s3(output)
        self.uri = output if not self.remote or output.endswith("/") else output + "/"
        self.root = staging if self.remote else Path(output)
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in ("result.json", "metrics.jsonl"):  # a rerun into the same folder starts a fresh record
            (self.root / stale).unlink(missing_ok=True)
        self.model_dir = Path(model_dir) if model_dir else None
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        default_interval = float(os.environ.get(INTERVAL_ENV, "5"))
        self.min_interval = default_interval if min_interval is None else min_interval
        self._clock = clock
        self._last_sync = float("-inf")
        self._dirty: set[str] = set()
        self._s3: Any = None
        self.puts = 0  # S3 PUTs so far; tests check the throttle with it
        self.last_progress: dict[str, Any] | None = None

    def uri_of(self, name: str) -> str:
        return f"{self.uri}{name}" if self.remote else str(self.root / name)

    def _client(self) -> Any:
        if self._s3 is None:
            self._s3 = s3uri.client()
        return self._s3

    def _put(self, name: str) -> None:
        data = (self.root / name).read_bytes()
        s3uri.upload_bytes(data, self.uri + name, s3=self._client(), content_type="application/json")
        self.puts += 1

    def progress(
        self, payload: dict[str, Any], metrics_line: dict[str, Any] | None = None, force: bool = False
    ) -> None:
        """Rewrite progress.json (and append a metrics line); on S3, push both at most every min_interval s."""
        payload = {**payload, "updated_at": now_iso()}
        self.last_progress = payload
        _write_atomic(self.root / "progress.json", json.dumps(payload).encode())
        self._dirty.add("progress.json")
        if metrics_line is not None:
            with (self.root / "metrics.jsonl").open("a") as handle:
                handle.write(json.dumps(metrics_line) + "\n")
            self._dirty.add("metrics.jsonl")
        self.flush(force=force)

    def flush(self, force: bool = False) -> None:
        if not self.remote or not self._dirty:
            return
        if not force and self._clock() - self._last_sync < self.min_interval:
            return
        # S3 has no append: metrics.jsonl is re-put whole (it stays small: one line per logging step).
        for name in sorted(self._dirty):
            self._put(name)
        self._dirty.clear()
        self._last_sync = self._clock()

    def save_dir(self, src: Path, name: str) -> str:
        """Publish a finished directory (a checkpoint or the adapter) under name/ and return its URI."""
        if self.remote:
            s3uri.upload_dir(src, self.uri + name + "/", s3=self._client())
            self.puts += sum(1 for p in src.rglob("*") if p.is_file())
        elif src.resolve() != (self.root / name).resolve():
            shutil.copytree(src, self.root / name, dirs_exist_ok=True)
        if name.startswith("checkpoints/") and self.checkpoint_dir is not None:
            # SageMaker syncs /opt/ml/checkpoints to S3 and restores it on a managed-spot restart.
            shutil.copytree(src, self.checkpoint_dir / name.removeprefix("checkpoints/"), dirs_exist_ok=True)
        if name == "adapter" and self.model_dir is not None and self.model_dir.resolve() != self.root.resolve():
            shutil.copytree(src, self.model_dir, dirs_exist_ok=True)  # SageMaker packs this as model.tar.gz
        log.info("saved %s", self.uri_of(name))
        return self.uri_of(name) + ("/" if self.remote else "")

    def result(self, payload: dict[str, Any]) -> None:
        """Write result.json last: it tells the control plane the job is over and how it ended."""
        self.flush(force=True)
        payload = {**payload, "finished_at": now_iso()}
        _write_atomic(self.root / "result.json", json.dumps(payload, indent=2).encode())
        if self.remote:
            self._put("result.json")


def write_failure_file(path: str | None, message: str) -> None:
    """SageMaker shows the first 1 KB of /opt/ml/output/failure as the job's FailureReason."""
    if not path:
        return
    try:
        _write_atomic(Path(path), message.encode()[:1024])
    except OSError as exc:
        log.warning("could not write %s: %s", path, exc)
