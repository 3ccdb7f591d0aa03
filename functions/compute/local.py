"""The `local` backend: the trainer as a resource-limited subprocess of the control plane (`make run`, CI).

Each run lives in `{runs_dir}/{run_name}/` (spec.json, state.json, train.log), so a second submit of a name finds
the first run even from a fresh backend object or a restarted control plane. state.json is replaced atomically and
changed only under a flock on `{runs_dir}/.lock`, so threads, backend objects and processes may share a runs dir.
Runs beyond `max_concurrent` wait in FIFO order. One long-lived launcher thread forks every child: PR_SET_PDEATHSIG
fires when the *forking thread* ends and worker threads come and go (so `procs._die_with_parent_hook`, armed only on
the main thread, does not fit). A watcher thread per child records its exit code, then calls the exit listeners
(`add_exit_listener`): the control plane that owns the backend settles the job at once, not at its reconciler's next
quiet check. How state.json reads as a RunState is in `local_runs`.

`local_run_memory_limit_mb` sets RLIMIT_AS (address space, not RSS): CPU torch maps ~0.9 GB at import for ~0.4 GB
RSS, so allow 2x the expected RSS; CUDA reserves tens of GB of address space at init and fails under it, so it is
off by default and must stay off on GPU machines.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from functions.compute import base, local_runs, machine, subprocs
from functions.compute.base import RunState, RunStatus, TrainingSpec
from functions.compute.subprocs import kill_if_same, resolve_command, signal_group, write_json
from functions.core.settings import Settings, get_settings

log = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = "~/.cache/ministudio/runs"
_EXIT_SHUTDOWN_SECONDS = 10.0  # at interpreter exit the trainer gets at most this long to checkpoint
_backends: weakref.WeakSet[LocalBackend] = weakref.WeakSet()


class LocalBackend:
    name = "local"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        command: Sequence[str] | None = None,
        runs_dir: str | Path | None = None,
        max_concurrent: int | None = None,
        grace_seconds: float | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        s = settings or get_settings()
        # Seed 000's FINETUNING_SCRIPT_PATH names the trainer (default `ministudio-train`); tests pass their own.
        self.command = resolve_command(list(command) if command is not None else shlex.split(s.finetuning_script_path))
        self.runs_dir = Path(runs_dir or s.local_runs_dir or DEFAULT_RUNS_DIR).expanduser()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.max_concurrent = max_concurrent or s.local_max_concurrent_jobs
        self.grace_seconds = s.cancel_grace_seconds if grace_seconds is None else grace_seconds
        self.threads = s.local_run_threads or max(1, machine.usable_cpus() // self.max_concurrent)
        self.nice = s.local_run_nice
        self.memory_limit_mb = s.local_run_memory_limit_mb
        self.env_passthrough = tuple(s.local_child_env_passthrough)
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._cv = threading.Condition()
        self._kicks = self._passes = 0
        self._closed = self._finished = False
        self._launcher: threading.Thread | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._watchers: dict[str, threading.Thread] = {}
        self._exit_listeners: list[Callable[[str], None]] = []
        _backends.add(self)
        self._kick(wait=False)  # runs a previous control plane left queued start without waiting for a submit

    # --- the protocol ---------------------------------------------------------------------------------------
    def submit(self, run_name: str, spec: TrainingSpec) -> RunStatus:
        folder = self._dir(run_name)
        with self._locked():
            if self._read(run_name) is None:
                folder.mkdir(exist_ok=True)
                write_json(folder / "spec.json", spec.to_json())
                write_json(folder / "state.json", {"seq": time.time_ns(), "submitted_at": time.time()})
        self._kick(wait=True)  # starts it now if a slot is free, so callers see `running` at once
        return self.status(run_name)

    def status(self, run_name: str) -> RunStatus:
        state = self._read(run_name)
        kind = local_runs.classify(state)
        if state is None:
            return RunStatus(run_name, kind)
        message = local_runs.failure(state, self.logs(run_name, 20)) if kind is RunState.failed else state.get("note")
        pid = state.get("pid")
        return RunStatus(run_name, kind, message, state.get("exit_code"), None if pid is None else str(pid))

    def cancel(self, run_name: str) -> RunStatus:
        with self._locked():
            state = self._read(run_name)
            if state is not None and state.get("exit_code") is None and not state.get("cancel"):
                state.update(cancel=True, cancelled_at=time.time())
                write_json(self._dir(run_name) / "state.json", state)
                pid, key = state.get("pid"), state.get("pid_key")
                if pid is not None and key is not None and machine.process_key(pid) == key:
                    signal_group(pid, signal.SIGTERM)  # the trainer checkpoints and writes result.json
                    timer = threading.Timer(self.grace_seconds, kill_if_same, (pid, key))
                    timer.daemon = True
                    timer.start()
        return self.status(run_name)

    def retry(self, run_name: str) -> RunStatus:
        """Run an ended, unsuccessful run's trainer again, as a new attempt: it resumes from the last complete
        checkpoint the earlier attempt left under the job's output. A run alive or succeeded is left as it is."""
        with self._locked():
            state = self._read(run_name)
            if state is not None and local_runs.classify(state) in (RunState.failed, RunState.cancelled):
                write_json(self._dir(run_name) / "state.json", local_runs.next_attempt(state))
        self._kick(wait=True)
        return self.status(run_name)

    def logs(self, run_name: str, tail: int = 200) -> str:
        return subprocs.tail(self._dir(run_name) / "train.log", tail)

    def cluster_status(self) -> dict[str, Any]:
        with self._locked():
            _, running, queued = self._overview()
        return {
            "backend": self.name,
            **machine.capacity(),
            "runs": {"running": running, "queued": queued, "max_concurrent": self.max_concurrent},
        }

    def add_exit_listener(self, listener: Callable[[str], None]) -> None:
        """Call `listener(run_name)`, on a watcher thread, as soon as a run this backend started has ended: the process
        that owns the backend settles the job at once. Not for runs a closing backend stops: whoever starts next
        settles those."""
        self._exit_listeners.append(listener)

    def close(self, grace_seconds: float | None = None) -> None:
        """Start nothing more, stop this backend's children (SIGTERM, grace, SIGKILL), end its launcher thread.

        Queued runs stay queued in the runs dir for the next backend to start.
        """
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._stop_children(self.grace_seconds if grace_seconds is None else grace_seconds)
        with self._cv:
            self._finished = True
            self._cv.notify_all()
        if self._launcher is not None:
            self._launcher.join()

    # --- state ------------------------------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        if base.run_name(name) != name:  # also keeps "../x" out of the runs dir
            raise ValueError(f"run name {name!r} is not a DNS-1123 label")
        return self.runs_dir / name

    def _read(self, name: str) -> dict[str, Any] | None:
        return subprocs.read_json(self._dir(name) / "state.json")

    def _names(self) -> list[str]:
        return [p.name for p in self.runs_dir.iterdir() if (p / "state.json").is_file()]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock, (self.runs_dir / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
            yield

    # --- launching --------------------------------------------------------------------------------------------
    def _kick(self, *, wait: bool) -> None:
        with self._cv:
            if self._closed:
                return
            if self._launcher is None:
                self._launcher = threading.Thread(target=self._launch_loop, name="local-backend", daemon=True)
                self._launcher.start()
            self._kicks += 1
            wanted = self._kicks
            self._cv.notify_all()
            if wait:
                self._cv.wait_for(lambda: self._passes >= wanted or self._closed, timeout=30)

    def _launch_loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._kicks > self._passes or self._closed, timeout=self.poll_seconds)
                if self._closed:  # children die with this thread (PDEATHSIG): outlive their graceful stop
                    self._cv.wait_for(lambda: self._finished)
                    return
                target = self._kicks
            try:
                self._start_queued()
            except Exception:  # a broken runs dir must not end the scheduler for good
                log.exception("local backend: scheduling pass failed")
            with self._cv:
                self._passes = target
                self._cv.notify_all()

    def _start_queued(self) -> None:
        with self._locked():
            states, running, queued = self._overview()
            for name in queued[: max(0, self.max_concurrent - len(running))]:
                self._spawn(name, states[name])

    def _overview(self) -> tuple[dict[str, dict[str, Any]], list[str], list[str]]:
        """Every run's state, the running ones, and the queue in FIFO order; call under `_locked`."""
        states, kinds = {}, {}
        for name in self._names():
            if (state := self._read(name)) is not None:
                states[name], kinds[name] = state, local_runs.classify(state)
        running = [n for n, kind in kinds.items() if kind is RunState.running]
        queued = sorted((n for n, kind in kinds.items() if kind is RunState.pending), key=lambda n: states[n]["seq"])
        return states, running, queued

    def _spawn(self, name: str, state: dict[str, Any]) -> None:
        folder = self._dir(name)
        argv = [*self.command, "--spec-json", (folder / "spec.json").read_text()]
        threads = str(self.threads)
        extra = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
        env = subprocs.child_env(extra, self.env_passthrough)  # an allow-list: no keys or URLs of the control plane
        try:
            proc = subprocs.spawn(argv, folder, "train.log", env, self.nice, self.memory_limit_mb)
        except (OSError, subprocess.SubprocessError) as exc:
            state.update(exit_code=127, error=f"could not start {argv[0]!r}: {exc}", ended_at=time.time())
            write_json(folder / "state.json", state)
            threading.Thread(target=self._ended, args=(name,), name=f"ended-{name}", daemon=True).start()  # unlocked
            return
        me = os.getpid()
        state.update(pid=proc.pid, pid_key=machine.process_key(proc.pid), started_at=time.time())
        state.update(owner=me, owner_key=machine.process_key(me))
        write_json(folder / "state.json", state)
        self._procs[name] = proc
        watcher = threading.Thread(target=self._watch, args=(name, proc), name=f"watch-{name}", daemon=True)
        self._watchers[name] = watcher
        watcher.start()

    def _watch(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        # The group id stays reserved while any member lives, so this reaches only what the trainer left behind.
        signal_group(proc.pid, signal.SIGKILL)
        with self._locked():
            state = self._read(name) or {}
            state.update(exit_code=code, ended_at=time.time())
            write_json(self._dir(name) / "state.json", state)
            self._procs.pop(name, None)
            self._watchers.pop(name, None)
        self._kick(wait=False)
        self._ended(name)

    def _ended(self, name: str) -> None:
        if self._closed:
            return
        for listener in list(self._exit_listeners):
            try:
                listener(name)
            except Exception:  # the reconciler settles what a failed listener left
                log.exception("local backend: exit listener failed for %s", name)

    def _stop_children(self, grace: float) -> None:
        procs = {name: p for name, p in list(self._procs.items()) if p.poll() is None}
        watchers = list(self._watchers.values())
        with self._locked():
            for name, proc in procs.items():
                # The trainer exits 0 after a SIGTERM checkpoint: without this mark that would read as success.
                state = {**(self._read(name) or {}), "cancel": True, "note": "stopped: the control plane shut down"}
                write_json(self._dir(name) / "state.json", state)
                signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        for watcher in watchers:  # close returns once state.json holds every exit code, not while it still says running
            watcher.join(5)


def create_backend(settings: Settings) -> LocalBackend:
    return LocalBackend(settings)


@atexit.register
def _stop_all_children() -> None:
    # Normal interpreter exit: give trainers a short chance to checkpoint; PDEATHSIG covers abrupt deaths.
    for backend in list(_backends):
        backend.close(min(backend.grace_seconds, _EXIT_SHUTDOWN_SECONDS))
