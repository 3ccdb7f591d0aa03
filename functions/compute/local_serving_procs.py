"""The local serving backend's processes: the server's command line and environment, starting and stopping it, and
the supervisor thread that follows each server from start to exit.

The supervisor knows at once what a poll would learn late: it reports readiness the moment /ready answers, and an
exit the moment the child dies, to the backend's listeners (the control plane refreshes the deployment records and
drops their route cache). A server that had been ready and exits is restarted on the same port with the adapters it
had (`--lora-modules`), after a backoff that doubles each attempt, up to `serving_restart_limit` times in a row;
past that its deployment fails. The operator's log gets the server's last output; tenants never see it (a shared
server's log names other tenants' adapters, jobs and S3 prefixes).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import httpx

from functions.compute import machine, subprocs
from functions.compute.serving import ServingSpec
from functions.core import names
from functions.core.settings import Settings

Proc = subprocess.Popen[bytes]


class Supervised(Protocol):
    """What a server's supervisor needs of its backend (functions/compute/local_serving.py implements it)."""

    settings: Settings
    stopping: threading.Event

    def folder(self, name: str) -> Path: ...
    def read_state(self, name: str) -> dict[str, Any] | None: ...
    def owns(self, name: str, proc: Proc) -> bool: ...
    def headers(self) -> dict[str, str]: ...
    def notify(self, name: str) -> None: ...
    def mark_ready(self, name: str, proc: Proc) -> None: ...
    def record_error(self, name: str, proc: Proc, message: str) -> None: ...
    def record_exit(self, name: str, proc: Proc, code: int, wanted: bool) -> dict[str, Any] | None: ...
    def restart(self, name: str) -> Proc | None: ...
    def announce_gone(self, name: str) -> None: ...


log = logging.getLogger("functions.compute.local_serving")

STOP_GRACE_SECONDS = 10.0
READY_POLL_SECONDS = 0.25
_LOG_TAIL_LINES = 40


def server_argv(command: list[str], spec: ServingSpec, port: int, folder: Path, threads: int, source: str) -> list[str]:
    if spec.profile == "tabular":  # seed 004's classical models: versions in the artifacts bucket (server_env)
        return [
            *command,
            "--profile",
            "tabular",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--request-log",
            str(folder / "requests.sqlite"),
        ]
    argv = [
        *command,
        "--model",
        spec.model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-loras",
        str(spec.max_loras),
        "--adapter-source",
        source,
        "--request-log",
        str(folder / "requests.sqlite"),
        "--torch-threads",
        str(threads),
    ]
    if spec.engine != "auto":
        argv += ["--engine", spec.engine]
    if spec.adapters:
        argv += ["--lora-modules", *(f"{a.model_id}={a.artifact_uri}" for a in spec.adapters)]
    return argv


def server_env(settings: Settings) -> dict[str, str]:
    # The artifacts bucket: where a tabular server keeps its tenants' model versions (`tabular/{tenant}/...`).
    extra = {
        "PYTHONUNBUFFERED": "1",
        "AWS_REGION": settings.aws_region,
        "ARTIFACTS_BUCKET_NAME": settings.artifacts_bucket,
    }
    if settings.aws_endpoint_url:
        extra["AWS_ENDPOINT_URL"] = settings.aws_endpoint_url
    if settings.inference_api_key is not None:
        extra["API_KEY"] = settings.inference_api_key.get_secret_value()  # not on argv: `ps` shows argv to all
    else:  # `make run` always sets one; without it (a bare test setup) the server is told it is for development
        log.warning("INFERENCE_API_KEY is not set: local inference servers start without authentication")
        extra["ALLOW_NO_API_KEY"] = "1"
    # An allow-list, so a server never sees the admin key, database or Redis URLs, or the API's PORT.
    return subprocs.child_env(extra, settings.local_child_env_passthrough)


def start(argv: list[str], folder: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocs.spawn(argv, folder, "server.log", env)


def stop(pid: int, key: str | None, proc: subprocess.Popen[bytes] | None) -> None:
    if key is None or machine.process_key(pid) != key:
        return  # gone already, or a recycled pid: never signal someone else's process
    subprocs.signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while time.monotonic() < deadline and machine.process_key(pid) == key:
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    subprocs.signal_group(pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def probe(port: int, headers: dict[str, str]) -> tuple[bool, str | None, bool]:
    """(ready, detail, broken): `broken` when the server is up but says it cannot load (it stays alive saying so)."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2.0, headers=headers)
    except httpx.HTTPError:
        return False, "starting", False
    if response.status_code == 200:
        return True, None, False
    with contextlib.suppress(ValueError):
        body = response.json()
        return False, str(body.get("error") or body.get("model_status") or "loading"), bool(body.get("error"))
    return False, f"readiness answered {response.status_code}", False


def exit_message(state: dict[str, Any]) -> str:
    """What the deployment's owner reads: the exit, never the server's output."""
    code = state.get("exit_code")
    head = f"the inference server exited with code {code}" if code is not None else "the inference server is gone"
    restarts = int(state.get("restarts") or 0) if state.get("gave_up") else 0
    return f"{head}; {restarts} restart(s) did not bring it back" if restarts else head


def restart_message(restart: dict[str, Any], limit: int) -> str:
    return f"restarting after exit code {restart.get('exit_code')} (attempt {restart.get('attempt')} of {limit})"


def supervise(backend: Supervised, name: str, proc: subprocess.Popen[bytes] | None) -> None:
    """The thread that follows one deployment's server through its starts and restarts until it is gone for good."""
    while proc is not None:
        code = _until_exit(backend, name, proc)
        proc = _after_exit(backend, name, proc, code)


def _until_exit(backend: Supervised, name: str, proc: subprocess.Popen[bytes]) -> int:
    state = backend.read_state(name) or {}
    port, restarting, waking = state.get("port"), bool(state.get("restart")), bool(state.get("waking"))
    deadline = time.monotonic() + backend.settings.serving_ready_timeout_seconds
    while port is not None and backend.owns(name, proc):
        with contextlib.suppress(subprocess.TimeoutExpired):
            return proc.wait(READY_POLL_SECONDS)
        ready, detail, broken = probe(int(port), backend.headers())
        if ready:
            backend.mark_ready(name, proc)
            backend.notify(name)
            break
        if (restarting or waking) and (broken or time.monotonic() > deadline):
            # A restart that cannot load (or never gets ready) is a failed attempt: end it, the next one follows.
            # A wake-up from idle that cannot load fails its deployment with the reason (no restart follows).
            log.warning("local serving: server of %s is not coming up (%s); stopping it", name, detail)
            if waking:
                why = detail if broken else "not ready in time"
                backend.record_error(name, proc, f"the inference server could not start: {why}")
            subprocs.signal_group(proc.pid, signal.SIGKILL)
        elif broken or time.monotonic() > deadline:
            break  # a first start that cannot load stays as it is: the deployment's timeout decides
    return proc.wait()


def _after_exit(
    backend: Supervised, name: str, proc: subprocess.Popen[bytes], code: int
) -> subprocess.Popen[bytes] | None:
    subprocs.signal_group(proc.pid, signal.SIGKILL)  # whatever the server left behind in its group
    settings = backend.settings
    wanted = backend.owns(name, proc)  # False once deleted or closing: an exit we asked for
    state = backend.record_exit(name, proc, code, wanted)
    backend.announce_gone(name)
    if state is None or not wanted:
        return None
    restart = state.get("restart")
    plan = restart_message(restart, settings.serving_restart_limit) if restart else "not restarting"
    tail = subprocs.tail(backend.folder(name) / "server.log", _LOG_TAIL_LINES).strip()
    log.warning(
        "local serving: %s (pid %s) exited with code %s; %s; last output:\n%s", name, proc.pid, code, plan, tail
    )
    backend.notify(name)
    if not restart:
        return None
    delay = settings.serving_restart_backoff_seconds * 2 ** (int(restart["attempt"]) - 1)
    if backend.stopping.wait(delay):
        return None
    return backend.restart(name)


def next_attempt(state: dict[str, Any], now: float, settings: Settings) -> int:
    """Restarts in a row: a server that stayed up for the window since it was last ready starts the count afresh."""
    ready_since = state.get("ready_since")
    if ready_since is not None and now - float(ready_since) >= settings.serving_restart_window_seconds:
        return 1
    return int(state.get("restarts") or 0) + 1


def adapter_source(settings: Settings) -> str:
    """Where servers find `ft:` adapters on demand: the trainer's output layout under the artifacts bucket."""
    return f"s3://{settings.artifacts_bucket}/{names.ARTIFACTS_PREFIX}{{tenant}}/{{job_id}}/adapter/"


def free_port() -> int:
    from functions.local.procs import free_port

    return free_port()


def announce(settings: Settings, name: str, port: int | None, tenant: str = "") -> None:
    """Tell the local Prometheus (when `make run --prometheus` started one) which servers to scrape."""
    from functions.local import prometheus

    folder = prometheus.targets_dir(settings)
    try:
        if port is None:
            prometheus.remove_target(folder, name)
        else:
            prometheus.write_target(folder, name, port, {"tenant": tenant})
    except OSError as exc:  # monitoring is optional: serving goes on without it
        log.warning("local serving: could not update the Prometheus target of %s: %s", name, exc)


def error_message(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError):
        body = response.json()
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(body.get("message") or error or body)
    return response.text[:500] or f"HTTP {response.status_code}"
