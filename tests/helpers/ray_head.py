"""A throwaway local Ray head (`ray start --head`) for tests: its Jobs REST API is what the `ray` backend speaks,
the same API a KubeRay head service serves."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import psutil
import pytest

from functions.local.procs import free_port

START_TIMEOUT = 90.0


@contextlib.contextmanager
def local_ray_head(env: Mapping[str, str] | None = None, num_cpus: int = 1) -> Iterator[str]:
    """Start a head with its own temp dir and free ports; yields the dashboard (Jobs API) address."""
    ray_cli = Path(sys.executable).with_name("ray")
    # Short: Ray puts unix sockets under it, and their paths must stay under 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    dashboard = free_port()
    argv = [
        str(ray_cli) if ray_cli.exists() else shutil.which("ray") or "ray",
        *("start", "--head", "--block", f"--num-cpus={num_cpus}", "--include-dashboard=true", "--disable-usage-stats"),
        f"--port={free_port()}",
        f"--dashboard-port={dashboard}",
        "--dashboard-host=127.0.0.1",
        f"--ray-client-server-port={free_port()}",  # fixed defaults (10001, 52365) would clash with other heads
        f"--dashboard-agent-listen-port={free_port()}",
        f"--temp-dir={temp_dir}",
    ]
    base = dict(os.environ if env is None else env)
    head_env = {k: v for k, v in base.items() if k != "PORT"}
    # Job entrypoints run with the head's environment: the venv's console scripts must be on its PATH.
    head_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{head_env.get('PATH', '')}"
    log_path = Path(temp_dir) / "ray-start.log"
    with log_path.open("wb") as log:
        head = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=head_env, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_for_jobs_api(head, address, log_path)
        yield address
    finally:
        _stop_head(head, temp_dir)


def _wait_for_jobs_api(head: subprocess.Popen[bytes], address: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start exited with {head.returncode}:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{address}/api/jobs/", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"the Ray Jobs API did not answer within {START_TIMEOUT:.0f}s:\n{log_path.read_text()[-3000:]}")


def _stop_head(head: subprocess.Popen[bytes], temp_dir: str) -> None:
    # What `ray stop --force` does (SIGKILL: a throwaway head has nothing to save), but only to this head: its process
    # tree, then anything still naming its temp dir (job drivers run in sessions of their own). `ray stop` itself
    # would stop every Ray head on the machine, other test runs' included.
    with contextlib.suppress(psutil.NoSuchProcess):
        procs = [psutil.Process(head.pid), *psutil.Process(head.pid).children(recursive=True)]
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(procs, timeout=10)
    head.wait(timeout=10)
    leftovers = _processes_naming(temp_dir)
    for proc in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(leftovers, timeout=10)
    shutil.rmtree(temp_dir, ignore_errors=True)
    assert not _processes_naming(temp_dir), "Ray processes outlived the test head"


def _processes_naming(text: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found
