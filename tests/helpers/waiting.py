"""Polling until something holds, for tests that wait on processes, queues and servers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_for(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> Any:
    """Call `check` until it returns something truthy, and return that; after `timeout` seconds, fail naming `what`
    (or the check) and the last value it returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or check} not met within {timeout}s (last value {value!r})")
        time.sleep(interval)


def wait_for_health(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    """Wait until the server `proc` started on `port` answers /health (200, or 503 while its model is not loaded);
    fail with the end of its `log` when it exits or never answers."""
    import httpx

    deadline, answered = time.monotonic() + timeout, False
    while time.monotonic() < deadline and proc.poll() is None and not answered:
        try:
            answered = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            time.sleep(0.3)
    assert answered, log.read_text()[-2000:]
