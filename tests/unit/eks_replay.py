"""A Kubernetes API server stand-in for the eks backend's tests: an HTTP server on 127.0.0.1 that answers a script of
recorded responses in order and records every request it got.

The backend's real client (the typed APIs over `kubernetes.client.ApiClient`: urllib3, auth header, JSON bodies)
talks to it, so the tests cover the HTTP layer and not a mock of the backend's own methods. A request that does not
match the next scripted one is answered 599 and recorded as a mismatch; `verify()` fails the test on any mismatch or
unused response.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "k8s"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """The `Status` object the API server sends with every error (the shape `kubectl` prints)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    body: Any
    content_type: str = "application/json"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class ReplayServer:
    script: list[Exchange] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    url: str = ""

    def expect(self, method: str, path: str, status: int = 200, body: Any = None, content_type: str = "") -> None:
        content_type = content_type or ("text/plain" if isinstance(body, str) else "application/json")
        self.script.append(Exchange(method, path, status, {} if body is None else body, content_type))

    def start(self) -> str:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                replay.requests.append(Request(self.command, url.path, query, headers, body))
                step = replay.script.pop(0) if replay.script else None
                if step is None or (step.method, step.path) != (self.command, url.path):
                    expected = f"{step.method} {step.path}" if step else "nothing"
                    replay.mismatches.append(f"got {self.command} {url.path}, expected {expected}")
                    self._send(599, "application/json", b"{}")
                    return
                payload = step.body if isinstance(step.body, str) else json.dumps(step.body)
                self._send(step.status, step.content_type, payload.encode())

            def _send(self, status: int, content_type: str, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def verify(self) -> None:
        assert not self.mismatches, self.mismatches
        assert not self.script, f"responses never asked for: {[(s.method, s.path) for s in self.script]}"

    def last(self, method: str) -> Request:
        return [r for r in self.requests if r.method == method][-1]
