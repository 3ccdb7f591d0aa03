"""The `local` serving backend: each deployment is a `ministudio-serve` subprocess on a free 127.0.0.1 port.

Each deployment lives in `{serving_dir}/{name}/` (spec.json, state.json, server.log, requests.sqlite), so a second
deploy of a name finds the first server even from a fresh backend object. Servers are forked by one long-lived thread
(PR_SET_PDEATHSIG fires when the forking thread ends), run in their own process group, and get their port, the server
key and the adapter source explicitly: they never inherit the API's `PORT`. Locally one replica serves; `scale`
records the asked range and says so.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import httpx

from functions.compute import machine, subprocs
from functions.compute.serving import AdapterSpec, Endpoint, EndpointState, EndpointStatus, ServingSpec
from functions.core import names
from functions.core.settings import Settings, get_settings

log = logging.getLogger(__name__)

DEFAULT_COMMAND = ("ministudio-serve",)
DEFAULT_SERVING_DIR = "~/.cache/ministudio/serving"
_STOP_GRACE_SECONDS = 10.0
_backends: weakref.WeakSet[LocalServingBackend] = weakref.WeakSet()


class LocalServingBackend:
    name = "local"

    def __init__(self, settings: Settings | None = None, *, command: tuple[str, ...] = DEFAULT_COMMAND) -> None:
        self.settings = s = settings or get_settings()
        self.command = subprocs.resolve_command(list(command))
        self.dir = Path(s.local_serving_dir or DEFAULT_SERVING_DIR).expanduser()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.threads = s.local_serving_threads or machine.usable_cpus()
        self._lock = threading.RLock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        # One long-lived thread forks every server, so PDEATHSIG is tied to it and not to a short-lived caller.
        self._spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-serving")
        _backends.add(self)

    # --- the protocol ---------------------------------------------------------------------------------------
    def deploy(self, spec: ServingSpec) -> EndpointStatus:
        folder = self._folder(spec.name)
        with self._lock:
            state = self._read(spec.name)
            if state is not None and self._alive(state):
                return self.status(spec.name)
            folder.mkdir(parents=True, exist_ok=True)
            subprocs.write_json(folder / "spec.json", spec.to_json())
            port = _free_port()
            state = {"port": port, "created_at": time.time(), "adapters": [a.model_id for a in spec.adapters]}
            self._spawner.submit(self._spawn, spec, state).result()
        return self.status(spec.name)

    def status(self, name: str) -> EndpointStatus:
        state = self._read(name)
        if state is None:
            return EndpointStatus(name, EndpointState.missing)
        endpoint = Endpoint(kind="http", url=f"http://127.0.0.1:{state['port']}")
        adapters = tuple(state.get("adapters", ()))
        pid = str(state.get("pid")) if state.get("pid") is not None else None
        if not self._alive(state):
            message = state.get("error") or self._exit_message(name, state)
            return EndpointStatus(name, EndpointState.failed, 1, 0, endpoint, adapters, message, pid)
        ready, detail = self._ready(state["port"])
        kind = EndpointState.ready if ready else EndpointState.deploying
        return EndpointStatus(name, kind, 1, int(ready), endpoint, adapters, detail, pid)

    def scale(self, name: str, min_replicas: int, max_replicas: int) -> EndpointStatus:
        with self._lock:
            state = self._read(name)
            if state is not None:
                state.update(min_replicas=min_replicas, max_replicas=max_replicas)
                subprocs.write_json(self._folder(name) / "state.json", state)
        current = self.status(name)
        note = f"local backend runs one replica (asked {min_replicas}-{max_replicas})"
        return EndpointStatus(**{**current.__dict__, "message": current.message or note})

    def delete(self, name: str) -> EndpointStatus:
        with self._lock:
            state = self._read(name)
            proc = self._procs.pop(name, None)
            if state is not None and state.get("pid") is not None:
                _stop(int(state["pid"]), state.get("pid_key"), proc)
            shutil.rmtree(self._folder(name), ignore_errors=True)
        self._announce(name, None)
        return EndpointStatus(name, EndpointState.missing)

    def add_adapter(self, name: str, adapter: AdapterSpec) -> EndpointStatus:
        """Pre-load the adapter (the server would also fetch it on its first request); a rejected adapter raises
        ValueError with the server's reason."""
        state = self._read(name)
        if state is None:
            raise LookupError(f"no local deployment {name}")
        if adapter.model_id in state.get("adapters", ()):
            return self.status(name)  # idempotent: a redelivery or a racing refresh attaches nothing twice
        body = {"lora_name": adapter.model_id, "lora_path": adapter.artifact_uri}
        response = self._post(state["port"], "/v1/load_lora_adapter", body)
        if response.status_code >= 500:  # the server's fault, not the adapter's: the message is retried
            raise RuntimeError(f"loading {adapter.model_id} failed on {name}: {_error_message(response)}")
        if response.status_code >= 400 and "already been loaded" not in response.text:
            raise ValueError(_error_message(response))
        return self._set_adapters(name, lambda names: [*dict.fromkeys([*names, adapter.model_id])])

    def remove_adapter(self, name: str, model_id: str) -> EndpointStatus:
        state = self._read(name)
        if state is None:
            return EndpointStatus(name, EndpointState.missing)
        response = self._post(state["port"], "/v1/unload_lora_adapter", {"lora_name": model_id})
        if response.status_code >= 400 and response.status_code != 404:
            raise ValueError(_error_message(response))
        return self._set_adapters(name, lambda names: [n for n in names if n != model_id])

    def adapter_endpoint(self, name: str, model_id: str) -> Endpoint | None:
        return self.status(name).endpoint  # one server answers for its base model and every adapter

    def logs(self, name: str, tail: int = 200) -> str:
        return subprocs.tail(self._folder(name) / "server.log", tail)

    def close(self) -> None:
        """Stop every server this backend started (SIGTERM, grace, SIGKILL) and the spawner thread."""
        with self._lock:
            procs = list(self._procs.items())
            self._procs.clear()
        for name, proc in procs:
            state = self._read(name) or {}
            _stop(proc.pid, state.get("pid_key"), proc)
        self._spawner.shutdown(wait=True)

    # --- internals --------------------------------------------------------------------------------------------
    def _folder(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"deployment name {name!r} is not a plain name")
        return self.dir / name

    def _read(self, name: str) -> dict[str, Any] | None:
        return subprocs.read_json(self._folder(name) / "state.json")

    def _alive(self, state: dict[str, Any]) -> bool:
        pid, key = state.get("pid"), state.get("pid_key")
        return pid is not None and state.get("exit_code") is None and machine.process_key(int(pid)) == key

    def _spawn(self, spec: ServingSpec, state: dict[str, Any]) -> None:
        folder = self._folder(spec.name)
        key = self.settings.inference_api_key
        argv = [
            *self.command,
            "--model",
            spec.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(state["port"]),
            "--max-loras",
            str(spec.max_loras),
            "--adapter-source",
            adapter_source(self.settings),
            "--request-log",
            str(folder / "requests.sqlite"),
            "--torch-threads",
            str(self.threads),
        ]
        if spec.engine != "auto":
            argv += ["--engine", spec.engine]
        if spec.adapters:
            argv += ["--lora-modules", *(f"{a.model_id}={a.artifact_uri}" for a in spec.adapters)]
        env = {k: v for k, v in os.environ.items() if k not in ("PORT", "API_KEY", "API_PORT")}
        env.update(PYTHONUNBUFFERED="1", AWS_REGION=self.settings.aws_region)
        if self.settings.aws_endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.settings.aws_endpoint_url
        if key is not None:
            env["API_KEY"] = key.get_secret_value()  # not on argv: `ps` shows argv to every user
        try:
            with (folder / "server.log").open("ab") as out:
                proc = subprocess.Popen(  # noqa: S603 - argv is the configured server command and our own values
                    argv,
                    cwd=folder,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=subprocs.child_setup(0, None),
                )
        except (OSError, subprocess.SubprocessError) as exc:
            state.update(exit_code=127, error=f"could not start {argv[0]!r}: {exc}")
            subprocs.write_json(folder / "state.json", state)
            return
        state.update(pid=proc.pid, pid_key=machine.process_key(proc.pid), started_at=time.time())
        subprocs.write_json(folder / "state.json", state)
        self._procs[spec.name] = proc
        self._announce(spec.name, state["port"], spec.tenant)
        threading.Thread(target=self._watch, args=(spec.name, proc), name=f"watch-{spec.name}", daemon=True).start()
        log.info("local serving: started %s (pid %s, port %s)", spec.name, proc.pid, state["port"])

    def _watch(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        subprocs.signal_group(proc.pid, signal.SIGKILL)
        with self._lock:
            state = self._read(name)
            if state is not None and state.get("pid") == proc.pid:
                state.update(exit_code=code, ended_at=time.time())
                subprocs.write_json(self._folder(name) / "state.json", state)
        self._announce(name, None)

    def _announce(self, name: str, port: int | None, tenant: str = "") -> None:
        """Tell the local Prometheus (when `make run --prometheus` started one) which servers to scrape."""
        from functions.local import prometheus

        folder = prometheus.targets_dir(self.settings)
        try:
            if port is None:
                prometheus.remove_target(folder, name)
            else:
                prometheus.write_target(folder, name, port, {"tenant": tenant})
        except OSError as exc:  # monitoring is optional: serving goes on without it
            log.warning("local serving: could not update the Prometheus target of %s: %s", name, exc)

    def _exit_message(self, name: str, state: dict[str, Any]) -> str:
        code = state.get("exit_code")
        head = f"the inference server exited with code {code}" if code is not None else "the server is gone"
        tail = self.logs(name, 20).strip()
        return f"{head}; last output:\n{tail}" if tail else head

    def _ready(self, port: int) -> tuple[bool, str | None]:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2.0, headers=self._headers())
        except httpx.HTTPError:
            return False, "starting"
        if response.status_code == 200:
            return True, None
        with contextlib.suppress(ValueError):
            body = response.json()
            return False, str(body.get("error") or body.get("model_status") or "loading")
        return False, f"readiness answered {response.status_code}"

    def _post(self, port: int, path: str, body: dict[str, Any]) -> httpx.Response:
        url = f"http://127.0.0.1:{port}{path}"
        return httpx.post(url, json=body, headers=self._headers(), timeout=self.settings.proxy_timeout_seconds)

    def _headers(self) -> dict[str, str]:
        key = self.settings.inference_api_key
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}

    def _set_adapters(self, name: str, change: Any) -> EndpointStatus:
        with self._lock:
            state = self._read(name)
            if state is not None:
                state["adapters"] = change(list(state.get("adapters", [])))
                subprocs.write_json(self._folder(name) / "state.json", state)
        return self.status(name)


def adapter_source(settings: Settings) -> str:
    """Where servers find `ft:` adapters on demand: the trainer's output layout under the artifacts bucket."""
    return f"s3://{settings.artifacts_bucket}/{names.ARTIFACTS_PREFIX}{{tenant}}/{{job_id}}/adapter/"


def _free_port() -> int:
    from functions.local.procs import free_port

    return free_port()


def _stop(pid: int, key: str | None, proc: subprocess.Popen[bytes] | None) -> None:
    if key is None or machine.process_key(pid) != key:
        return  # gone already, or a recycled pid: never signal someone else's process
    subprocs.signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    while time.monotonic() < deadline and machine.process_key(pid) == key:
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    subprocs.signal_group(pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def _error_message(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError):
        body = response.json()
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(body.get("message") or error or body)
    return response.text[:500] or f"HTTP {response.status_code}"


def create_serving_backend(settings: Settings) -> LocalServingBackend:
    return LocalServingBackend(settings)


@atexit.register
def _stop_all_servers() -> None:
    for backend in list(_backends):
        backend.close()
