"""Subprocess helpers shared by the local training and serving backends: command resolution, the child's
environment (an allow-list) and preexec (niceness, RLIMIT_AS, PR_SET_PDEATHSIG), process-group signals, atomic JSON
state and log tails."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from functions.compute import machine

_PR_SET_PDEATHSIG = 1

# What a trainer or inference server may inherit from the control plane: the process basics, locale, the ML stack's
# knobs, and what reaching S3 takes (it reads datasets and writes artifacts there). Never the admin key, the server
# key (given explicitly, where it is needed), database or Redis URLs, or any other setting of the control plane.
CHILD_ENV_NAMES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "TEMP", "TMP",
        "XDG_CACHE_HOME", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHASHSEED", "SSL_CERT_FILE", "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "OPENBLAS_CORETYPE",
        "OPENBLAS_L2_SIZE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE", "MINISTUDIO_MODEL_CACHE", "MINISTUDIO_PROGRESS_INTERVAL",
    }
)  # fmt: skip
CHILD_ENV_PREFIXES = ("LC_", "HF_", "TRANSFORMERS_", "TORCH_", "OMP_", "MKL_", "NCCL_", "MLFLOW_")


def resolve_command(command: list[str]) -> list[str]:
    """`ministudio-train` from PATH, else the console script beside this interpreter (a venv not on PATH)."""
    if command and os.sep not in command[0] and shutil.which(command[0]) is None:
        sibling = Path(sys.executable).with_name(command[0])
        if sibling.is_file():
            return [str(sibling), *command[1:]]
    return command


def child_env(extra: Mapping[str, str] | None = None, passthrough: Iterable[str] = ()) -> dict[str, str]:
    """The environment of a trainer or inference server: the allow-list above, the operator's `passthrough`
    names, then `extra` (ports, thread counts, the server key) on top."""
    allowed = CHILD_ENV_NAMES | set(passthrough)
    env = {k: v for k, v in os.environ.items() if k in allowed or k.startswith(CHILD_ENV_PREFIXES)}
    env.update(extra or {})
    return env


def spawn(
    argv: list[str],
    folder: Path,
    log_name: str,
    env: dict[str, str],
    niceness: int = 0,
    memory_limit_mb: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start a trainer or inference server in `folder`, output appended to `folder/log_name`, in its own process
    group (a stop signals it and its children) and killed when the launching thread ends (child_setup)."""
    with (folder / log_name).open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - argv is the configured command and our own values
            argv,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=child_setup(niceness, memory_limit_mb),
        )


def child_setup(niceness: int, memory_limit_mb: int | None) -> Callable[[], None]:
    """The child's preexec_fn: lower priority, optional RLIMIT_AS, SIGKILL when the launcher thread ends."""
    prctl: Any = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: no lookups after it
            prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    parent, kill = os.getpid(), int(signal.SIGKILL)
    limit = memory_limit_mb * 1024 * 1024 if memory_limit_mb else None

    def setup() -> None:
        os.nice(niceness)
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
            if os.getppid() != parent:  # the control plane died before prctl took effect
                os._exit(1)

    return setup


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def kill_if_same(pid: int, key: str) -> None:
    if machine.process_key(pid) == key:  # never signal a recycled pid
        signal_group(pid, signal.SIGKILL)


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    with tmp.open("w") as f:
        f.write(json.dumps(data))
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename: a power cut leaves the old file or the new, not an empty one
    os.replace(tmp, path)  # readers never see half a file


def tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, end - max(65536, lines * 1024)))  # logs can be large: read only their end
            data = fh.read()
    except FileNotFoundError:
        return ""
    return b"\n".join(data.splitlines()[-lines:]).decode(errors="replace") if lines > 0 else ""


def read_json(path: Path) -> dict[str, Any] | None:
    """A state file written by write_json, or None when there is none."""
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
