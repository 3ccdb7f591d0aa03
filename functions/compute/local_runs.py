"""What a local run's state.json says: its RunState and, for a failed run, a reason a person can act on.

Pure functions of the state file (plus process identity checks), shared by every LocalBackend object and process
that reads a runs dir.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from functions.compute import machine
from functions.compute.base import RunState


def classify(state: dict[str, Any] | None) -> RunState:
    if state is None:
        return RunState.missing
    cancelled, code, pid = bool(state.get("cancel")), state.get("exit_code"), state.get("pid")
    if code is not None:
        return RunState.cancelled if cancelled else RunState.succeeded if code == 0 else RunState.failed
    if pid is None:
        return RunState.cancelled if cancelled else RunState.pending
    if machine.process_key(pid) == state.get("pid_key") or _owner_alive(state):
        return RunState.running  # alive, or its owner's watcher is about to record the exit code
    return RunState.cancelled if cancelled else RunState.failed  # nobody is left to record how it ended


def _owner_alive(state: dict[str, Any]) -> bool:
    owner = state.get("owner")
    return owner is not None and machine.process_key(owner) == state.get("owner_key")


def failure(state: dict[str, Any], log_tail: str) -> str:
    code = state.get("exit_code")
    if state.get("error"):
        head = str(state["error"])
    elif code is None:
        head = f"the trainer (pid {state.get('pid')}) ended while no control plane watched it"
    elif code < 0:
        head = f"the trainer was killed by {signal.Signals(-code).name}"
    else:
        head = f"the trainer exited with code {code}"
    tail = log_tail.strip()
    return f"{head}; last output:\n{tail}" if tail else head


def next_attempt(state: dict[str, Any]) -> dict[str, Any]:
    """A queued state for the next attempt of an ended run, with how the earlier ones ended (spec.json is kept)."""
    ended = {k: state.get(k) for k in ("exit_code", "cancel", "error", "note", "started_at", "ended_at")}
    previous = [*state.get("previous", []), {"attempt": state.get("attempt", 1), **ended}]
    return {"seq": time.time_ns(), "submitted_at": time.time(), "attempt": len(previous) + 1, "previous": previous}
