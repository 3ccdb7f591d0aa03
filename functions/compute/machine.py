"""What this machine has: CPUs, memory and GPUs for `cluster_status`, and process identity checks."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_PROC = Path("/proc")


def process_key(pid: int) -> str | None:
    """A live process's identity (its start time), None when gone or a zombie: guards against pid reuse."""
    if not _PROC.is_dir():  # no procfs (macOS): liveness only
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "alive"
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]  # field 22 of proc(5): starttime


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset/cpuset limits, unlike os.cpu_count()
    except AttributeError:
        return os.cpu_count() or 1


def capacity() -> dict[str, Any]:
    cpus, load = usable_cpus(), os.getloadavg()[0]
    total, available = _memory()
    gpus = _gpus()
    return {
        "cpu": {"total": cpus, "available": round(max(0.0, cpus - load), 2), "load_average_1m": round(load, 2)},
        "memory": {"total_bytes": total, "available_bytes": available},
        "gpu": {"total": len(gpus), "available": sum(not g["busy"] for g in gpus), "devices": gpus},
    }


def _memory() -> tuple[int | None, int | None]:
    try:
        info = dict(line.split(":", 1) for line in (_PROC / "meminfo").read_text().splitlines() if ":" in line)
        return int(info["MemTotal"].split()[0]) * 1024, int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pass
    try:
        import psutil  # only where there is no /proc; psutil is not in the Lambda bundle's dependencies
    except ImportError:
        return None, None
    memory = psutil.virtual_memory()
    return int(memory.total), int(memory.available)


def _gpus() -> list[dict[str, Any]]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        rows = _smi(smi, "--query-gpu=index,uuid,name,memory.total,memory.used")
        busy = {row[0] for row in _smi(smi, "--query-compute-apps=gpu_uuid")}
        return [
            {
                "index": int(i),
                "name": name,
                "memory_total_mib": int(total),
                "memory_used_mib": int(used),
                "busy": uuid in busy,
            }
            for i, uuid, name, total, used in rows
        ]
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("nvidia-smi failed, reporting no GPUs: %s", exc)
        return []


def _smi(smi: str, query: str) -> list[list[str]]:
    out = subprocess.run(  # noqa: S603 - fixed arguments
        [smi, query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return [[field.strip() for field in line.split(",")] for line in out.splitlines() if line.strip()]
