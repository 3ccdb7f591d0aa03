"""`ministudio files upload | list | show`: datasets and their validation report, through /v1/files and /v1/uploads."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx
from rich.console import Console

from functions.cli.api import Api, ApiError, common_flags, dump, listing, say

# The console's threshold (console/src/lib/upload.ts): from 4 MiB the bytes go straight to S3 with the Upload's
# presigned POST (a Lambda request body is capped at 6 MB, and big bodies are better not streamed through the API).
DIRECT_UPLOAD_BYTES = 4 * 1024 * 1024
SETTLED = {"processed", "error"}


def register(sub: Any) -> None:
    files = sub.add_parser("files", help="datasets: upload, list, validation report").add_subparsers(
        dest="action", required=True
    )
    flags = common_flags()
    upload = files.add_parser("upload", parents=[flags], help="upload a JSONL file")
    upload.add_argument("path", type=Path)
    upload.add_argument("--purpose", default="fine-tune")
    upload.add_argument("--direct", action="store_true", help="use the Uploads API's presigned POST at any size")
    upload.add_argument("--wait", action="store_true", help="wait for validation and show the report")
    upload.set_defaults(handler=_upload)
    listing = files.add_parser("list", parents=[flags], help="your files with their status")
    listing.add_argument("--purpose")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(handler=_list)
    show = files.add_parser("show", parents=[flags], help="a file's validation report")
    show.add_argument("file_id")
    show.set_defaults(handler=_show)


def upload(api: Api, path: Path, purpose: str, direct: bool = False) -> dict[str, Any]:
    """Multipart POST /v1/files for small files; an OpenAI Upload with its presigned S3 POST for large ones."""
    if not path.is_file():
        raise ApiError(0, f"no such file: {path}")
    size = path.stat().st_size
    if not direct and size < DIRECT_UPLOAD_BYTES:
        with path.open("rb") as handle:
            return dict(api.call("POST", "/v1/files", data={"purpose": purpose}, files={"file": (path.name, handle)}))
    body = {"filename": path.name, "purpose": purpose, "bytes": size, "mime_type": "application/jsonl"}
    created = api.call("POST", "/v1/uploads", json=body)
    target = created["presigned_post"]
    with path.open("rb") as handle:
        sent = httpx.post(target["url"], data=target["fields"], files={"file": (path.name, handle)}, timeout=600)
    if sent.status_code >= 300:
        api.call("POST", f"/v1/uploads/{created['id']}/cancel")
        raise ApiError(sent.status_code, f"storage refused the upload: {sent.text[:300]}")
    done = api.call("POST", f"/v1/uploads/{created['id']}/complete", json={})
    return dict(done["file"])


def wait(api: Api, file_id: str, quiet: bool, timeout: float = 600, interval: float = 1.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    console = Console(stderr=True, quiet=quiet)
    with console.status(f"validating {file_id}"):
        while True:
            file = api.call("GET", f"/v1/files/{file_id}")
            if file["status"] in SETTLED or time.monotonic() > deadline:
                return dict(file)
            time.sleep(interval)


def report(file: dict[str, Any], out: TextIO) -> None:
    v = file.get("validation") or {}
    out.write(f"{file['id']}  {file['filename']}  {file['status']}  ({file['bytes']} bytes)\n")
    if file["status"] == "uploaded":
        out.write("validation: pending\n")
        return
    out.write(
        f"format {v.get('format') or '-'}  examples {v.get('examples', 0)}  lines {v.get('lines', 0)}  "
        f"messages {v.get('messages', 0)}  tokens ~{v.get('token_estimate', 0)}  errors {v.get('error_count', 0)}\n"
    )
    for error in v.get("errors") or []:
        out.write(f"  {describe(error)}\n")


def describe(error: dict[str, Any]) -> str:
    """`line N: reason` (the reason may already start with its line: it is not said twice)."""
    reason = str(error.get("reason") or "invalid")
    if error.get("line") is None or reason.startswith(f"line {error['line']}"):
        return reason
    return f"line {error['line']}: {reason}"


def _settled(file: dict[str, Any], args: argparse.Namespace, out: TextIO) -> int:
    if args.json:
        dump(file, out)
    else:
        report(file, out)
    if file["status"] != "error":
        return 0
    errors = (file.get("validation") or {}).get("errors") or [{"reason": file.get("status_details")}]
    sys.stderr.write(f"{file['id']} failed validation: {describe(errors[0])}\n")
    return 1


def _upload(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    file = upload(api, args.path, args.purpose, args.direct)
    if args.wait:
        return _settled(wait(api, file["id"], args.json), args, out)
    say(file, f"uploaded {args.path} as {file['id']} ({file['status']})", args.json, out)
    return 0


def _list(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.purpose:
        params["purpose"] = args.purpose
    page = api.call("GET", "/v1/files", params=params)
    columns = ["ID", "STATUS", "PURPOSE", "BYTES", "EXAMPLES", "FILENAME"]

    def row(f: dict[str, Any]) -> list[str]:
        examples = (f.get("validation") or {}).get("examples", 0)
        return [f["id"], f["status"], f["purpose"], str(f["bytes"]), str(examples), f["filename"]]

    listing(page, columns, row, args.json, out)
    return 0


def _show(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    return _settled(api.call("GET", f"/v1/files/{args.file_id}"), args, out)
