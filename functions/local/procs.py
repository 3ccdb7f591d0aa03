"""Child processes of the local runtime: moto's server (S3, SQS) and a real redis-server.

No child may outlive the runtime, however it ends:
- each child gets its own session, so a terminal's Ctrl-C reaches only the runtime, which stops children in
  order instead of racing them;
- on Linux each child asks the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG), which covers a
  runtime or test process that is itself SIGKILLed;
- an atexit hook stops whatever is still running at a normal exit, and `exit_on_sigterm` makes SIGTERM a
  normal exit.
Children never inherit `PORT`: it is the API's port, and a child reading it would fight the API for it.
"""

from __future__ import annotations

import atexit
import ctypes
import http.client
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_STOP_TIMEOUT_SECONDS = 5.0
_START_ATTEMPTS = 3  # a port picked by free_port can be taken before the child binds it
_REDIS_FALLBACK_PATHS = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")

_live: dict[int, Child] = {}
_live_lock = threading.Lock()


class ChildStartError(RuntimeError):
    """A child exited or did not answer before its start timeout."""


@dataclass(eq=False)
class Child:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    url: str
    log_path: Path
    _own_log: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = _STOP_TIMEOUT_SECONDS) -> None:
        """Terminate the child's process group, kill it if it lingers; safe to call any number of times."""
        with self._lock:
            if self.process.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("%s (pid %d) ignored SIGTERM for %.1fs; killing it", self.name, self.pid, timeout)
                    self._signal(signal.SIGKILL)
                    self.process.wait()
            with _live_lock:
                _live.pop(self.pid, None)
            if self._own_log:
                self.log_path.unlink(missing_ok=True)
                self._own_log = False

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _signal(self, signum: int) -> None:
        # The child leads its own group (start_new_session), so killpg also reaches anything it spawned.
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            self.process.send_signal(signum)

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the caller must still expect a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(
    port: int | None = None, *, timeout: float = 60.0, log_path: Path | None = None, recording: Path | None = None
) -> Child:
    """moto's server for S3/SQS on 127.0.0.1; `.url` is the endpoint for boto3's `endpoint_url`. With `recording`,
    S3's writes are recorded there (functions/local/moto_recording.py) and recording starts once `replay` ran."""

    def argv(p: int) -> list[str]:
        server = (
            ["-m", "functions.local.moto_recording", "--recording", str(recording)]
            if recording
            else ["-m", "moto.server"]
        )
        return [sys.executable, *server, "-H", "127.0.0.1", "-p", str(p)]

    return _start("moto", argv, _http_answers, "http://127.0.0.1:{port}", port, timeout, log_path)


def find_redis_server() -> str | None:
    """Path of a `redis-server` binary, or None (then the runtime needs REDIS_URL)."""
    found = shutil.which("redis-server")
    if found:
        return found
    return next((p for p in _REDIS_FALLBACK_PATHS if os.access(p, os.X_OK)), None)


def start_redis(
    port: int | None = None, *, timeout: float = 20.0, log_path: Path | None = None, data_dir: Path | None = None
) -> Child:
    """A redis-server on 127.0.0.1; `.url` is its redis:// DSN. Without `data_dir` it writes nothing to disk; with
    it, its append-only file lives there (fsynced every second; a torn tail from a crash is cut when it loads)."""
    binary = find_redis_server()
    if binary is None:
        raise FileNotFoundError("redis-server not found: install it (apt-get install redis-server) or set REDIS_URL")
    workdir = str(data_dir) if data_dir else tempfile.gettempdir()  # --dir is required even with persistence off
    if data_dir:
        data_dir.mkdir(parents=True, exist_ok=True)
    persistence = ("--appendonly", "yes", "--appendfsync", "everysec", "--aof-load-truncated", "yes")

    def argv(p: int) -> list[str]:
        return [
            binary,
            *("--port", str(p), "--bind", "127.0.0.1", "--save", ""),
            *(persistence if data_dir else ("--appendonly", "no")),
            *("--daemonize", "no", "--dir", workdir),
        ]

    return _start("redis", argv, _redis_pongs, "redis://127.0.0.1:{port}/0", port, timeout, log_path)


def stop_all() -> None:
    """Stop every child still running, newest first (the runtime's shutdown path; also run at exit)."""
    with _live_lock:
        children = list(_live.values())
    for child in reversed(children):
        try:
            child.stop()
        except Exception:  # one stubborn child must not keep the others alive
            log.exception("stopping %s (pid %d) failed", child.name, child.pid)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks and atexit (which stop children) run; main thread only."""

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)


atexit.register(stop_all)


def _start(
    name: str,
    argv: Callable[[int], list[str]],
    ready: Callable[[int], bool],
    url_template: str,
    port: int | None,
    timeout: float,
    log_path: Path | None,
) -> Child:
    attempts = 1 if port is not None else _START_ATTEMPTS
    env = {key: value for key, value in os.environ.items() if key != "PORT"}
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else free_port()
        own_log = log_path is None
        path = log_path or Path(tempfile.mkstemp(prefix=f"ministudio-{name}-", suffix=".log")[1])
        with path.open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 - argv is built here, never from user input
                argv(chosen),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent_hook(),  # only calls a prctl resolved before fork
            )
        child = Child(name, process, chosen, url_template.format(port=chosen), path, _own_log=own_log)
        with _live_lock:
            _live[child.pid] = child
        try:
            _wait_ready(child, ready, timeout)
        except ChildStartError as exc:
            exited_early = not child.alive()  # most likely the port was taken between free_port and bind
            tail = child.log_tail()
            child.stop()
            if attempt == attempts or not exited_early:
                raise ChildStartError(f"{exc}\n--- {name} output ---\n{tail}") from None
            log.info("%s exited on port %d (attempt %d), retrying on another port", name, chosen, attempt)
            continue
        log.info("%s started: pid %d, %s", name, child.pid, child.url)
        return child
    raise AssertionError("unreachable")  # the loop either returns or raises


def _wait_ready(child: Child, ready: Callable[[int], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if child.process.poll() is not None:
            raise ChildStartError(f"{child.name} exited with status {child.process.returncode} before it was ready")
        # Checked again after the probe: a dying child must not pass on another server's answer on its port.
        if ready(child.port) and child.alive():
            return
        if time.monotonic() > deadline:
            raise ChildStartError(f"{child.name} did not answer on port {child.port} within {timeout:.0f}s")
        time.sleep(0.05)


def _http_answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _redis_pongs(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGKILL the child when its parent dies, or None where unavailable.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so it is only requested from the main
    thread: a child started from a short-lived worker thread would otherwise die with that thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def hook() -> None:
        # Resolved before fork: after fork only async-signal-safe work is wise, so no imports or lookups here.
        prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook
