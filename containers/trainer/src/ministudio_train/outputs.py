"""Everything the trainer reports, written under one output prefix (an s3:// prefix or a local directory).

The control plane learns about a job only from these objects (S3 events on `artifacts/`), so the order matters:
progress and checkpoints while running, `adapter/` at the end, and `result.json` last of all. On S3, progress and
metrics are re-put at most every `min_interval` seconds (each PUT costs money and fires an event); everything is
staged in a local directory first, so a local output and an S3 output hold the same files.

Each start of the trainer on an output is an attempt (`attempts/{n}/attempt.json`, n from 1): progress.json and
result.json carry its number, and a new attempt removes the result.json an earlier one left, so nothing of an
earlier attempt reads as the current one's. A checkpoint folder counts only once its `COMPLETE` marker exists: the
marker is written (or uploaded) after every other file of the checkpoint.
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
COMPLETE = "COMPLETE"
LATEST_ATTEMPT, CHECKPOINT_INDEX = "attempts/latest.json", "checkpoints/index.json"


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
        earlier = self.root / "result.json"  # local: read before it goes (on S3 begin_attempt reads it)
        self.earlier_result: dict[str, Any] = _marker(earlier.read_bytes()) if earlier.is_file() else {}
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
        self.attempt: int | None = None
        self._index: dict[str, Any] = {}  # S3: the complete checkpoints, as checkpoints/index.json lists them

    def begin_attempt(self) -> int:
        """Number this start of the trainer (1 + the last attempt recorded) and record it; drop the stale result.json
        an earlier attempt left, so the control plane never reads it as this one's (the attempt number in result.json
        guards the same where the trainer may not delete)."""
        last = int(_marker(self._read(LATEST_ATTEMPT) or b"").get("attempt") or 0)
        if self.remote:  # the result.json an earlier attempt ended with, if it wrote one
            self.earlier_result = _marker(self._read("result.json") or b"") if last else {}
        if self.remote:
            bucket, key = s3uri.split(self.uri + "result.json")
            try:
                self._client().delete_object(Bucket=bucket, Key=key)
            except Exception as exc:  # no s3:DeleteObject: the attempt number in result.json still tells them apart
                log.warning("could not delete the earlier attempt's result.json: %s", exc)
        elif (self.root / "attempts").is_dir():
            last = max([last, *(int(p.name) for p in (self.root / "attempts").iterdir() if p.name.isdigit())])
        self.attempt = last + 1
        record = json.dumps({"attempt": self.attempt, "started_at": now_iso()}).encode()
        for name in (f"attempts/{self.attempt}/attempt.json", LATEST_ATTEMPT):
            _write_atomic(self.root / name, record)
            if self.remote:
                self._put(name)
        return self.attempt

    def _read(self, name: str) -> bytes | None:
        """An object under the output, or None when there is none. S3 is read with GetObject alone (the trainer's
        role may not list): a missing key reads as 404, or 403 without s3:ListBucket."""
        if not self.remote:
            path = self.root / name
            return path.read_bytes() if path.is_file() else None
        from botocore.exceptions import ClientError

        bucket, key = s3uri.split(self.uri + name)
        try:
            return bytes(self._client().get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404", "403", "AccessDenied"):
                return None
            raise

    def complete_checkpoints(self) -> dict[str, dict[str, Any]]:
        """{checkpoint name: its COMPLETE marker} for every complete checkpoint under this output (and the SageMaker
        checkpoint folder); a folder without the marker is a checkpoint cut short and is ignored. On S3 the names
        come from `checkpoints/index.json` (written after each marker) and each marker is read back."""
        found: dict[str, dict[str, Any]] = {}
        for folder in (self.checkpoint_dir, None if self.remote else self.root / "checkpoints"):
            for marker in sorted(folder.glob(f"[!.]*/{COMPLETE}")) if folder is not None and folder.is_dir() else []:
                found[marker.parent.name] = {**_marker(marker.read_bytes()), "local": str(marker.parent)}
        if self.remote:
            self._index = _marker(self._read(CHECKPOINT_INDEX) or b"")
            for name in self._index:
                body = None if name in found else self._read(f"checkpoints/{name}/{COMPLETE}")
                if body is not None:
                    found[name] = _marker(body)
        return found

    def fetch_checkpoint(self, name: str, marker: dict[str, Any]) -> Path:
        """A local folder holding checkpoint `name` (downloaded from S3, the files its marker lists, when needed)."""
        if marker.get("local"):
            return Path(marker["local"])
        dest = self.root / "checkpoints" / name
        bucket, prefix = s3uri.split(f"{self.uri}checkpoints/{name}/")
        for rel in marker.get("files") or []:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            self._client().download_file(bucket, prefix + rel, str(dest / rel))
        return dest

    def restore_metrics(self, lines: bytes) -> None:
        """Resuming: the metrics of the steps before the checkpoint, so the loss curve goes on instead of restarting."""
        _write_atomic(self.root / "metrics.jsonl", lines)
        self._dirty.add("metrics.jsonl")

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
        payload = {**payload, "attempt": self.attempt, "updated_at": now_iso()}
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
        files = sorted((p for p in src.rglob("*") if p.is_file()), key=lambda p: (p.name == COMPLETE, p.as_posix()))
        if self.remote:
            bucket, prefix = s3uri.split(f"{self.uri}{name}/")
            for path in files:  # the COMPLETE marker last: a reader that finds it finds every other object
                self._client().upload_file(str(path), bucket, prefix + path.relative_to(src).as_posix())
            self.puts += len(files)
            if name.startswith("checkpoints/") and files and files[-1].name == COMPLETE:
                self._index[name.removeprefix("checkpoints/")] = _marker(files[-1].read_bytes())
                _write_atomic(self.root / CHECKPOINT_INDEX, json.dumps(self._index).encode())
                self._put(CHECKPOINT_INDEX)  # after the marker: every checkpoint it names is whole
        elif src.resolve() != (self.root / name).resolve():
            _copy_marker_last(files, src, self.root / name)
        if name.startswith("checkpoints/") and self.checkpoint_dir is not None:
            # SageMaker syncs /opt/ml/checkpoints to S3 and restores it on a managed-spot restart.
            _copy_marker_last(files, src, self.checkpoint_dir / name.removeprefix("checkpoints/"))
        if name == "adapter" and self.model_dir is not None and self.model_dir.resolve() != self.root.resolve():
            shutil.copytree(src, self.model_dir, dirs_exist_ok=True)  # SageMaker packs this as model.tar.gz
        log.info("saved %s", self.uri_of(name))
        return self.uri_of(name) + ("/" if self.remote else "")

    def result(self, payload: dict[str, Any]) -> None:
        """Write result.json last: it tells the control plane the job is over and how it ended."""
        self.flush(force=True)
        payload = {**payload, "attempt": self.attempt, "finished_at": now_iso()}
        _write_atomic(self.root / "result.json", json.dumps(payload, indent=2).encode())
        if self.remote:
            self._put("result.json")


def _marker(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _copy_marker_last(files: list[Path], src: Path, dest: Path) -> None:
    (dest / COMPLETE).unlink(missing_ok=True)  # replacing a checkpoint: incomplete until its new marker is there
    for path in files:
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def write_failure_file(path: str | None, message: str) -> None:
    """SageMaker shows the first 1 KB of /opt/ml/output/failure as the job's FailureReason."""
    if not path:
        return
    try:
        _write_atomic(Path(path), message.encode()[:1024])
    except OSError as exc:
        log.warning("could not write %s: %s", path, exc)
