"""The CLI's HTTP client for the public API (the routes the console uses), its errors and shared flags."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any, TextIO

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(Exception):
    """An API answer of 4xx/5xx (or a local failure, status 0): `main` prints it to stderr and exits 1."""

    def __init__(self, status: int, message: str, line: int | None = None) -> None:
        where = f" (line {line})" if line is not None else ""
        super().__init__(f"error{f' {status}' if status else ''}: {message}{where}")  # 0: no HTTP answer
        self.status, self.message, self.line = status, message, line


def common_flags() -> argparse.ArgumentParser:
    """--url, --api-key and --json, accepted after every API command (`ministudio files list --json`)."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "--url", help=f"API base URL (default: MINISTUDIO_API_URL, MINISTUDIO_BASE_URL or {DEFAULT_URL})"
    )
    flags.add_argument("--api-key", help="tenant API key (default: MINISTUDIO_API_KEY)")
    flags.add_argument("--json", action="store_true", help="one JSON document on stdout, no progress output")
    return flags


def error_message(body: Any, status: int) -> tuple[str, int | None]:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or status), error.get("line")
    if isinstance(error, str):
        return error, None
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"]), None
    return str(body) if body else f"HTTP {status}", None


class Api:
    """Bearer-key calls to the API. `http` lets tests hand in a client (FastAPI's TestClient)."""

    def __init__(
        self,
        base_url: str | None = None,
        key: str | None = None,
        timeout: float = 30.0,
        http: Any = None,  # an httpx.Client, or anything with its request/stream (FastAPI's TestClient)
    ) -> None:
        env_url = os.environ.get("MINISTUDIO_API_URL") or os.environ.get("MINISTUDIO_BASE_URL")
        self.base_url = (base_url or env_url or DEFAULT_URL).rstrip("/")
        key = key or os.environ.get("MINISTUDIO_API_KEY")
        if not key:
            raise SystemExit("set MINISTUDIO_API_KEY or --api-key (a tenant key; `make run` prints the demo tenant's)")
        self.headers = {"Authorization": f"Bearer {key}"}
        self.client = http or httpx.Client(base_url=self.base_url, timeout=timeout)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, headers=self.headers, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach {self.base_url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise ApiError(response.status_code, *error_message(body, response.status_code))
        return body

    def stream(self, method: str, path: str, **kwargs: Any) -> Any:
        """A streaming request (a context manager of httpx.Response); errors are read and raised as ApiError."""
        return self.client.stream(method, path, headers=self.headers, **kwargs)


def dump(document: Any, out: TextIO) -> None:
    out.write(json.dumps(document, indent=2) + "\n")


def say(document: Any, line: str, as_json: bool, out: TextIO) -> None:
    """One answer: the whole document for scripts (`--json`), else one line for people."""
    if as_json:
        dump(document, out)
    else:
        out.write(line + "\n")


def listing(page: Any, header: list[str], row: Callable[[Any], list[str]], as_json: bool, out: TextIO) -> bool:
    """A list answer: the whole page for scripts (`--json`), else a table of its `data`, one `row` per item; True
    when the table was written (so that what follows it is for people too)."""
    if as_json:
        dump(page, out)
        return False
    table([row(item) for item in page["data"]], header, out)
    return True


def table(rows: list[list[str]], header: list[str], out: TextIO) -> None:
    """Left-aligned columns as wide as their widest cell."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out.write("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")
