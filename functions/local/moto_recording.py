"""moto's server with its own recorder kept as the local platform's S3 state (`-m functions.local.moto_recording`).

moto keeps everything in memory; its recorder (`MOTO_RECORDER_FILEPATH`, `/moto-api/recorder/replay-recording`)
appends each request to a JSON-lines file and replays it into a fresh server. This launcher runs moto's own
server and recorder with three changes, so that the recording is the durable copy of the platform's objects:
- only requests that change S3's objects and buckets are recorded (reads, SQS polls and multipart parts are not:
  a day of long polls would make a replay take a day, and a part's upload id is random, so a replayed part could
  never find its upload). A completed multipart upload is recorded as one PUT of the object it made;
- each entry is flushed and fsynced before moto answers, so an acknowledged write survives `kill -9` and a power cut;
- `repair` (run by the runtime before moto starts) cuts a torn last line left by a crash mid-write.
SQS is not recorded: queues are recreated and their work re-derived from the documents at each start
(functions/local/restore.py), which also covers messages that were in flight when the platform died.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlunsplit

_KEPT_HEADERS = ("content-type", "content-encoding", "content-disposition", "cache-control", "x-amz-meta-")
COMPACT_PATH = "/ministudio/compact-recording"
COMPACT_ABOVE_BYTES = 64 * 1024 * 1024  # smaller recordings replay in a few seconds: not worth rewriting
log = logging.getLogger(__name__)


def is_object_write(method: str, path: str, query: str, headers: dict[str, str], body_start: bytes) -> bool:
    """Whether a request changes S3's buckets or objects (and so belongs in the recording)."""
    if path.startswith("/moto-api") or any(h.lower() == "x-amz-target" for h in headers):
        return False  # moto's own API, or an AWS JSON-protocol call (SQS)
    if body_start.startswith(b"Action="):
        return False  # an AWS query-protocol call (SQS)
    params = parse_qs(query, keep_blank_values=True)
    if method == "PUT":  # PutObject, CopyObject, CreateBucket; not parts, tags, policies or notifications
        return not params
    if method == "DELETE":
        return not params or set(params) == {"versionId"}
    if method == "POST":  # DeleteObjects, or a browser's presigned POST upload to the bucket
        return set(params) == {"delete"} or (not params and path.count("/") == 1)
    return False


def completed_upload(method: str, query: str) -> bool:
    params = parse_qs(query, keep_blank_values=True)
    return method == "POST" and "uploadId" in params


def repair(path: Path) -> int:
    """Cut everything after the last complete JSON line; returns the bytes removed (0: nothing to repair)."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    keep = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            json.loads(line)
        except ValueError:
            break
        keep += len(line)
    if keep < len(data):
        with path.open("r+b") as f:
            f.truncate(keep)
            os.fsync(f.fileno())
    return len(data) - keep


def _install(location: Path) -> Callable[[Any], Any]:
    """Put the filtering recorder in moto's place; returns the WSGI wrapper that records completed uploads."""
    import moto.moto_api as moto_api
    from moto.moto_api._internal.recorder.models import Recorder

    lock = threading.Lock()

    def append(entry: dict[str, Any]) -> None:
        with lock, location.open("a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    class ObjectRecorder(Recorder):
        def _record_request(self, request: Any, body: bytes | None = None) -> None:
            if not self._user_enabled:
                return
            raw = _read_body(request) if body is None else body
            query = request.query_string.decode()
            if not is_object_write(request.method, request.path, query, dict(request.headers), raw[:7]):
                return
            append(_entry(request.method, request.raw_url, dict(request.headers.items()), raw))

    recorder = ObjectRecorder()
    recorder._location = str(location)
    moto_api.recorder = recorder

    def wrap(app: Any) -> Any:
        def recorded_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            status: list[str] = []

            def capture(code: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                status.append(code)
                return start_response(code, headers, *exc)

            method, query = environ.get("REQUEST_METHOD", ""), environ.get("QUERY_STRING", "")
            if environ.get("PATH_INFO") == COMPACT_PATH and method == "POST":
                if recorder._user_enabled:  # only between replay and recording, when nothing else writes
                    start_response("409 Conflict", [("Content-Type", "text/plain")])
                    return [b"compact before recording starts"]
                with lock:
                    kept = _compact(location, environ.get("HTTP_HOST", "127.0.0.1"))
                start_response("200 OK", [("Content-Type", "application/json")])
                return [json.dumps(kept).encode()]
            result = app(environ, capture)
            if recorder._user_enabled and completed_upload(method, query) and status and status[0].startswith("200"):
                body = b"".join(result)  # answer only after the entry is on disk
                _record_completed(environ, append)
                return [body]
            return result

        return recorded_app

    return wrap


def _compact(location: Path, host: str) -> dict[str, int]:
    """Rewrite the recording as the state it replays to: one CreateBucket per bucket and one PUT per live object, so
    deleted and overwritten objects (every progress.json a trainer rewrote) stop costing replay time. Written to a
    temporary file, fsynced and renamed over the recording: a crash leaves the old recording or the new one."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    tmp = location.with_suffix(".compacting")
    buckets = objects = 0
    with tmp.open("w") as f:
        for name, bucket in sorted(backend.buckets.items()):
            region = getattr(bucket, "region_name", "us-east-1")
            body = b"" if region == "us-east-1" else _location_constraint(region)
            f.write(json.dumps(_entry("PUT", f"http://{host}/{name}", {}, body)) + "\n")
            buckets += 1
            for key in list(bucket.keys.values()):
                if getattr(key, "is_latest", True) is False or not hasattr(key, "value"):
                    continue
                url = f"http://{host}/{name}/{quote(key.name, safe='/~')}"
                f.write(json.dumps(_entry("PUT", url, _object_headers(key), key.value)) + "\n")
                objects += 1
        f.flush()
        os.fsync(f.fileno())
    before = location.stat().st_size if location.exists() else 0
    os.replace(tmp, location)
    return {"buckets": buckets, "objects": objects, "bytes_before": before, "bytes_after": location.stat().st_size}


def _object_headers(obj: Any) -> dict[str, str]:
    """The headers a PUT needs to make an object again as it is: its type, encoding and user metadata."""
    return {n: v for n, v in obj.metadata.items() if n.lower().startswith(_KEPT_HEADERS)}


def _entry(method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    return {
        "headers": headers,
        "method": method,
        "url": url,
        "body": base64.b64encode(body).decode(),
        "body_encoded": True,
    }


def _location_constraint(region: str) -> bytes:
    return (
        '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
    ).encode()


def _read_body(request: Any) -> bytes:
    """The request's body, read the way moto's recorder reads it, and put back for moto's handler."""
    try:
        size = int(request.headers["Content-Length"])
    except (KeyError, ValueError):
        return b""
    raw = request.environ["wsgi.input"].read(size)
    request.environ["wsgi.input"] = io.BytesIO(raw)
    return bytes(raw)


def _record_completed(environ: dict[str, Any], append: Callable[[dict[str, Any]], None]) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    raw_path = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", ""))).split("?")[
        0
    ]
    bucket, _, key = unquote(raw_path).lstrip("/").partition("/")
    obj = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(bucket, key)
    if obj is None:
        return
    url = urlunsplit(("http", environ.get("HTTP_HOST", "127.0.0.1"), raw_path, "", ""))
    append(_entry("PUT", url, _object_headers(obj), obj.value))


def main(argv: list[str]) -> None:
    """`--recording FILE` then moto.server's own arguments (`-H 127.0.0.1 -p PORT`)."""
    if "--recording" not in argv:
        raise SystemExit("usage: python -m functions.local.moto_recording --recording FILE [moto.server args]")
    i = argv.index("--recording")
    location = Path(argv[i + 1])
    rest = argv[:i] + argv[i + 2 :]
    location.parent.mkdir(parents=True, exist_ok=True)
    os.environ["MOTO_RECORDER_FILEPATH"] = str(location)
    wrap = _install(location)

    import moto.server as server

    dispatcher = server.DomainDispatcherApplication

    class RecordedDispatcher(dispatcher):  # type: ignore[misc, valid-type]
        def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            return wrap(super().__call__)(environ, start_response)

    server.DomainDispatcherApplication = RecordedDispatcher  # type: ignore[misc]
    server.main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])


def restore(url: str, recording: Path, compact_above: int = COMPACT_ABOVE_BYTES) -> list[str]:
    """In the runtime: bring a fresh moto at `url` back to the recorded state, then record from here on.

    Returns what had to be repaired (a torn last entry), for the start-up report."""
    import httpx

    repaired = []
    cut = repair(recording)
    if cut:
        repaired.append(f"{recording.name}: cut a torn last entry ({cut} bytes) left by a crash mid-write")
    if recording.exists() and recording.stat().st_size:
        answer = httpx.post(f"{url}/moto-api/recorder/replay-recording", timeout=httpx.Timeout(10, read=3600))
        answer.raise_for_status()
        if recording.stat().st_size > compact_above:
            kept = httpx.post(f"{url}{COMPACT_PATH}", timeout=httpx.Timeout(10, read=3600)).raise_for_status().json()
            log.info("S3 recording compacted: %s", kept)
    httpx.post(f"{url}/moto-api/recorder/start-recording", timeout=10).raise_for_status()
    return repaired
