"""Scale to zero for the local serving backend (functions/compute/local_serving.py mixes this in): `sleep` stops a
deployment's server and keeps its folder (spec, port, adapters) with `asleep` in its state, so `status` reads
`idle`; `wake` starts it again from there with every adapter it had.

A wake-up is a first start, not a restart: a server that exits or cannot load on waking is not restarted, and its
supervisor records why (`record_error`), so the deployment fails with the reason at once and every request held for
it hears it (functions/deployments/wake.py). Both run under the backend's lock, so a wake that races a sleep either
finds the server still running (and the sleep then stops it: the wake-up's next step starts it again) or starts
exactly one.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from functions.compute import local_serving_procs as procs
from functions.compute import subprocs
from functions.compute.local_serving_standby import Standby
from functions.compute.serving import AdapterSpec, Endpoint, EndpointState, EndpointStatus, ServingSpec
from functions.core.settings import Settings

Proc = subprocess.Popen[bytes]


class _Backend(Protocol):
    """What the mixin uses of LocalServingBackend."""

    settings: Settings
    standby: Standby | None
    _lock: threading.RLock
    _procs: dict[str, Proc]
    _spawner: concurrent.futures.ThreadPoolExecutor

    def folder(self, name: str) -> Path: ...
    def read_state(self, name: str) -> dict[str, Any] | None: ...
    def status(self, name: str) -> EndpointStatus: ...
    def announce_gone(self, name: str) -> None: ...
    def _start(self, spec: ServingSpec, state: dict[str, Any]) -> Proc | None: ...
    def _supervise(self, name: str, proc: Proc | None) -> None: ...
    def _change(self, name: str, change: Callable[[dict[str, Any]], Any]) -> None: ...


# What a stopped server's state must not carry into its next start.
_RUN_KEYS = ("exit_code", "ended_at", "error", "pid", "pid_key", "restart", "restarts", "ready_once", "gave_up")


class SleepsAndWakes:
    def sleep(self: _Backend, name: str) -> EndpointStatus:
        """Stop the server (SIGTERM, grace, SIGKILL); its supervisor sees an exit it was asked for: no restart."""
        with self._lock:
            state = self.read_state(name)
            if state is None:
                return EndpointStatus(name, EndpointState.missing)
            proc = self._procs.pop(name, None)
            state.update(asleep=True, slept_at=time.time())
            state.pop("waking", None)
            subprocs.write_json(self.folder(name) / "state.json", state)
            if state.get("pid") is not None:
                procs.stop(int(state["pid"]), state.get("pid_key"), proc)
        self.announce_gone(name)
        return self.status(name)

    def wake(self: _Backend, name: str) -> EndpointStatus:
        """Start an asleep server on its port with its adapters; a running (or starting) one is left as it is."""
        with self._lock:
            state = self.read_state(name)
            data = subprocs.read_json(self.folder(name) / "spec.json")
            if state is None or data is None:
                return EndpointStatus(name, EndpointState.missing)
            if not state.get("asleep"):
                return self.status(name)
            for key in (*_RUN_KEYS, "asleep"):
                state.pop(key, None)
            state.update(waking=True, woken_at=time.time())
            proc = self._start(ServingSpec(**{**data, "adapters": adapters_of(data, state)}), state)
        self._supervise(name, proc)
        return self.status(name)

    def mark_ready(self: _Backend, name: str, proc: Proc) -> None:
        def ready(state: dict[str, Any]) -> None:
            if state.get("pid") == proc.pid:
                state.update(ready_once=True, ready_since=time.time())
                state.pop("restart", None)
                state.pop("waking", None)

        self._change(name, ready)
        if self.standby is not None:  # the next start (a wake-up) finds its imports done
            self._spawner.submit(self.standby.refill, procs.server_env(self.settings))

    def record_error(self: _Backend, name: str, proc: Proc, message: str) -> None:
        """Why a start failed, for the deployment's owner (redacted by the control plane before it is shown)."""
        self._change(name, lambda state: state.update(error=message) if state.get("pid") == proc.pid else None)


def adapters_of(data: dict[str, Any], state: dict[str, Any]) -> tuple[AdapterSpec, ...]:
    """The adapters a server had: the spec's, and those attached since (with their sources)."""
    uris = {a["model_id"]: a["artifact_uri"] for a in data.get("adapters", [])}
    uris.update(state.get("adapter_uris", {}))
    return tuple(AdapterSpec(m, uris[m], "") for m in state.get("adapters", []) if m in uris)


def idle_status(name: str, endpoint: Endpoint, adapters: tuple[str, ...]) -> EndpointStatus:
    return EndpointStatus(
        name, EndpointState.idle, 0, 0, endpoint, adapters, "scaled to zero: the next request wakes it"
    )
