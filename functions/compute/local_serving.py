"""The `local` serving backend: each deployment is a `ministudio-serve` subprocess on a free 127.0.0.1 port.

Each deployment lives in `{serving_dir}/{name}/` (spec.json, state.json, server.log, requests.sqlite), so a second
deploy of a name finds the first server even from a fresh backend object. Servers are forked by one long-lived thread
(PR_SET_PDEATHSIG fires when the forking thread ends), run in their own process group, and get their port, the server
key and the adapter source explicitly: they never inherit the API's `PORT`. A supervisor thread per server reports its
readiness and exit to `listeners` at once and restarts a server that dies (functions/compute/local_serving_procs.py).
Locally one replica serves; `scale` records the asked range and says so.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import shutil
import subprocess
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from functions.compute import local_serving_procs as procs
from functions.compute import machine, subprocs
from functions.compute.local_serving_standby import Standby
from functions.compute.local_serving_zero import SleepsAndWakes, idle_status
from functions.compute.serving import AdapterSpec, Endpoint, EndpointState, EndpointStatus, ServingSpec
from functions.core.settings import Settings, get_settings

log = logging.getLogger(__name__)

DEFAULT_COMMAND = ("ministudio-serve",)
DEFAULT_SERVING_DIR = "~/.cache/ministudio/serving"
_backends: weakref.WeakSet[LocalServingBackend] = weakref.WeakSet()
Proc = subprocess.Popen[bytes]
Listener = Callable[["LocalServingBackend", str], None]


class LocalServingBackend(SleepsAndWakes):  # sleep, wake, mark_ready, record_error: scale to zero
    name = "local"

    def __init__(self, settings: Settings | None = None, *, command: tuple[str, ...] = DEFAULT_COMMAND) -> None:
        self.settings = s = settings or get_settings()
        self.command = subprocs.resolve_command(list(command))
        self.dir = Path(s.local_serving_dir or DEFAULT_SERVING_DIR).expanduser()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.threads = s.local_serving_threads or machine.usable_cpus()
        self.listeners: list[Listener] = []  # called with (backend, name) when a server gets ready or exits
        self.stopping = threading.Event()
        self._lock = threading.RLock()
        self._procs: dict[str, Proc] = {}
        # One long-lived thread forks every server, so PDEATHSIG is tied to it and not to a short-lived caller.
        self._spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-serving")
        self.standby = Standby(self.dir) if s.local_serving_standby and command == DEFAULT_COMMAND else None
        _backends.add(self)

    # --- the protocol ---------------------------------------------------------------------------------------
    def deploy(self, spec: ServingSpec) -> EndpointStatus:
        folder = self.folder(spec.name)
        with self._lock:
            state = self.read_state(spec.name)
            if state is not None and (self._alive(state) or state.get("restart")):
                return self.status(spec.name)
            folder.mkdir(parents=True, exist_ok=True)
            subprocs.write_json(folder / "spec.json", spec.to_json())
            state = {"port": procs.free_port(), "created_at": time.time()}
            state.update(adapters=[a.model_id for a in spec.adapters])
            state.update(adapter_uris={a.model_id: a.artifact_uri for a in spec.adapters})
            proc = self._start(spec, state)
        self._supervise(spec.name, proc)
        return self.status(spec.name)

    def status(self, name: str) -> EndpointStatus:
        state = self.read_state(name)
        if state is None:
            return EndpointStatus(name, EndpointState.missing)
        endpoint = Endpoint(kind="http", url=f"http://127.0.0.1:{state['port']}")
        adapters = tuple(state.get("adapters", ()))
        if state.get("asleep"):
            return idle_status(name, endpoint, adapters)
        pid = str(state.get("pid")) if state.get("pid") is not None else None
        restart = state.get("restart")
        why_restarting = procs.restart_message(restart, self.settings.serving_restart_limit) if restart else None
        if not self._alive(state):
            if why_restarting and name in self._procs:  # else its supervisor went with an earlier control plane
                return EndpointStatus(
                    name, EndpointState.deploying, 1, 0, endpoint, adapters, why_restarting, pid, restarting=True
                )
            message = state.get("error") or procs.exit_message(state)
            return EndpointStatus(name, EndpointState.failed, 1, 0, endpoint, adapters, message, pid)
        ready, detail, _ = procs.probe(state["port"], self.headers())
        kind = EndpointState.ready if ready else EndpointState.deploying
        message = detail if ready or not why_restarting else why_restarting
        restarting = bool(restart) and not ready
        return EndpointStatus(name, kind, 1, int(ready), endpoint, adapters, message, pid, restarting=restarting)

    def scale(self, name: str, min_replicas: int, max_replicas: int) -> EndpointStatus:
        self._change(name, lambda state: state.update(min_replicas=min_replicas, max_replicas=max_replicas))
        current = self.status(name)
        note = f"local backend runs one replica (asked {min_replicas}-{max_replicas})"
        return EndpointStatus(**{**current.__dict__, "message": current.message or note})

    def delete(self, name: str) -> EndpointStatus:
        with self._lock:
            state = self.read_state(name)
            proc = self._procs.pop(name, None)
            if state is not None and state.get("pid") is not None:
                procs.stop(int(state["pid"]), state.get("pid_key"), proc)
            shutil.rmtree(self.folder(name), ignore_errors=True)
        self.announce_gone(name)
        return EndpointStatus(name, EndpointState.missing)

    def add_adapter(self, name: str, adapter: AdapterSpec) -> EndpointStatus:
        """Pre-load the adapter (the server would also fetch it on its first request); a rejected adapter raises
        ValueError with the server's reason."""
        state = self.read_state(name)
        if state is None:
            raise LookupError(f"no local deployment {name}")
        if adapter.model_id in state.get("adapters", ()):
            return self.status(name)  # idempotent: a redelivery or a racing refresh attaches nothing twice
        body = {"lora_name": adapter.model_id, "lora_path": adapter.artifact_uri}
        response = self._post(state["port"], "/v1/load_lora_adapter", body)
        if response.status_code >= 500:  # the server's fault, not the adapter's: the message is retried
            raise RuntimeError(f"loading {adapter.model_id} failed on {name}: {procs.error_message(response)}")
        if response.status_code >= 400 and "already been loaded" not in response.text:
            raise ValueError(procs.error_message(response))

        def attach(state: dict[str, Any]) -> None:  # remembered with its source: a restart loads it again
            state["adapters"] = [*dict.fromkeys([*state.get("adapters", []), adapter.model_id])]
            state["adapter_uris"] = {**state.get("adapter_uris", {}), adapter.model_id: adapter.artifact_uri}

        self._change(name, attach)
        return self.status(name)

    def remove_adapter(self, name: str, model_id: str) -> EndpointStatus:
        state = self.read_state(name)
        if state is None:
            return EndpointStatus(name, EndpointState.missing)
        response = self._post(state["port"], "/v1/unload_lora_adapter", {"lora_name": model_id})
        if response.status_code >= 400 and response.status_code != 404:
            raise ValueError(procs.error_message(response))

        def detach(state: dict[str, Any]) -> None:
            state["adapters"] = [n for n in state.get("adapters", []) if n != model_id]
            state.get("adapter_uris", {}).pop(model_id, None)

        self._change(name, detach)
        return self.status(name)

    def adapter_endpoint(self, name: str, model_id: str) -> Endpoint | None:
        return self.status(name).endpoint  # one server answers for its base model and every adapter

    def logs(self, name: str, tail: int = 200) -> str:
        return subprocs.tail(self.folder(name) / "server.log", tail)

    def close(self) -> None:
        """Stop every server this backend started (SIGTERM, grace, SIGKILL) and the spawner thread."""
        self.stopping.set()  # supervisors see the exits as asked for: nothing restarts
        with self._lock:
            running = list(self._procs.items())
            self._procs.clear()
        for name, proc in running:
            state = self.read_state(name) or {}
            procs.stop(proc.pid, state.get("pid_key"), proc)
        self._spawner.shutdown(wait=True)

    # --- for the supervisor (local_serving_procs.supervise) ---------------------------------------------------
    def folder(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"deployment name {name!r} is not a plain name")
        return self.dir / name

    def read_state(self, name: str) -> dict[str, Any] | None:
        return subprocs.read_json(self.folder(name) / "state.json")

    def owns(self, name: str, proc: Proc) -> bool:
        """True while `proc` is the deployment's server and nobody asked it to stop (delete, close)."""
        return not self.stopping.is_set() and self._procs.get(name) is proc

    def headers(self) -> dict[str, str]:
        key = self.settings.inference_api_key
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}

    def notify(self, name: str) -> None:
        for listener in list(self.listeners):
            try:
                listener(self, name)
            except Exception:  # a listener's failure must not stop the supervisor; the reconciler catches up
                log.exception("local serving: a listener failed on the news about %s", name)

    def record_exit(self, name: str, proc: Proc, code: int, wanted: bool) -> dict[str, Any] | None:
        """Write the exit into the state and decide on a restart (`restart` in the state); None when the state is
        gone or belongs to another process."""
        with self._lock:
            state = self.read_state(name)
            if state is None or state.get("pid") != proc.pid:
                return None
            now = time.time()
            state.update(exit_code=code, ended_at=now)
            state.pop("restart", None)
            if wanted and state.get("ready_once"):
                attempt = procs.next_attempt(state, now, self.settings)
                if attempt <= self.settings.serving_restart_limit:
                    state.update(restarts=attempt, restart={"attempt": attempt, "exit_code": code})
                else:
                    state.update(gave_up=True)
            if wanted and not state.get("restart"):
                self._procs.pop(name, None)
            subprocs.write_json(self.folder(name) / "state.json", state)
            return state

    def restart(self, name: str) -> Proc | None:
        """Start the server again on its port with every adapter it had; None when there is nothing to restart."""
        with self._lock:
            state = self.read_state(name)
            data = subprocs.read_json(self.folder(name) / "spec.json")
            if state is None or data is None or not state.get("restart") or self.stopping.is_set():
                return None
            uris = {a["model_id"]: a["artifact_uri"] for a in data.get("adapters", [])}
            uris.update(state.get("adapter_uris", {}))
            adapters = tuple(AdapterSpec(m, uris[m], "") for m in state.get("adapters", []) if m in uris)
            for key in ("exit_code", "ended_at", "error", "pid", "pid_key"):
                state.pop(key, None)
            try:
                proc = self._start(ServingSpec(**{**data, "adapters": adapters}), state)
            except RuntimeError:  # the spawner is shut down: the backend is closing
                return None
            if proc is None:  # the command cannot even start: no attempt will do better
                self._change(name, lambda s: (s.pop("restart", None), s.update(gave_up=True)))
        if proc is None:
            self.notify(name)
        return proc

    def announce_gone(self, name: str) -> None:
        procs.announce(self.settings, name, None)

    # --- internals --------------------------------------------------------------------------------------------
    def _alive(self, state: dict[str, Any]) -> bool:
        pid, key = state.get("pid"), state.get("pid_key")
        return pid is not None and state.get("exit_code") is None and machine.process_key(int(pid)) == key

    def _start(self, spec: ServingSpec, state: dict[str, Any]) -> Proc | None:
        return self._spawner.submit(self._spawn, spec, state).result()

    def _spawn(self, spec: ServingSpec, state: dict[str, Any]) -> Proc | None:
        folder = self.folder(spec.name)
        argv = procs.server_argv(
            self.command, spec, state["port"], folder, self.threads, procs.adapter_source(self.settings)
        )
        try:
            taken = self.standby.take(argv, folder) if self.standby else None  # its imports are done
            proc = taken or procs.start(argv, folder, procs.server_env(self.settings))
        except (OSError, subprocess.SubprocessError) as exc:
            state.update(exit_code=127, error=f"could not start {argv[0]!r}: {exc}")
            subprocs.write_json(folder / "state.json", state)
            return None
        state.update(pid=proc.pid, pid_key=machine.process_key(proc.pid), started_at=time.time())
        subprocs.write_json(folder / "state.json", state)
        self._procs[spec.name] = proc
        procs.announce(self.settings, spec.name, state["port"], spec.tenant)
        log.info("local serving: started %s (pid %s, port %s)", spec.name, proc.pid, state["port"])
        return proc

    def _supervise(self, name: str, proc: Proc | None) -> None:
        if proc is not None:
            thread = threading.Thread(target=procs.supervise, args=(self, name, proc), name=f"watch-{name}")
            thread.daemon = True
            thread.start()

    def _post(self, port: int, path: str, body: dict[str, Any]) -> httpx.Response:
        url = f"http://127.0.0.1:{port}{path}"
        return httpx.post(url, json=body, headers=self.headers(), timeout=self.settings.proxy_timeout_seconds)

    def _change(self, name: str, change: Callable[[dict[str, Any]], Any]) -> None:
        with self._lock:
            state = self.read_state(name)
            if state is not None:
                change(state)
                subprocs.write_json(self.folder(name) / "state.json", state)


def create_serving_backend(settings: Settings) -> LocalServingBackend:
    """The control plane's backend: its deployment records follow every server's readiness and exit at once."""
    from functions.deployments.watch import follow

    backend = LocalServingBackend(settings)
    backend.listeners.append(follow(settings))
    return backend


@atexit.register
def _stop_all_servers() -> None:
    for backend in list(_backends):
        backend.close()
