"""The `ray` backend: training runs as Ray jobs, through the Ray dashboard's Job Submission REST API.

httpx only, never the `ray` package (a ~240 MB wheel that must stay out of the Lambda bundle). `RAY_HEAD_ADDRESS` is
the dashboard's HTTP address: `http://127.0.0.1:8265` for a local head, `http://<cluster>-head-svc.<ns>:8265` for
a KubeRay head service. Behaviour checked against Ray 2.60:
- the submission id is the run name, so a redelivered dispatch finds the first job; a duplicate POST is refused
  with HTTP 500 (the head relays the job agent's 400) and a body saying "already exists";
- `POST /api/jobs/{id}/stop` sends SIGTERM to the entrypoint's process tree and SIGKILL after
  `RAY_JOB_STOP_WAIT_TIME_S`, read from the job's own runtime_env: each job carries `cancel_grace_seconds` there so
  the trainer has time to checkpoint (Ray's default is 3 s);
- a job with `compute.workers` > 1 (or several GPUs) runs the same entrypoint, which becomes the Ray Train driver
  (ministudio_train/distributed.py): it joins this cluster and Ray places its workers;
- `GET /api/cluster_status` reports logical resources as `[used, total]` once the autoscaler monitor has written
  them (a few seconds after the head starts); before that the totals come from `GET /nodes?view=summary`.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from collections.abc import Sequence
from typing import Any

import httpx

from functions.compute.base import RunState, RunStatus, TrainingSpec, stop_unless_settled
from functions.core.settings import Settings, get_settings

DEFAULT_COMMAND = ("ministudio-train",)
_STATES = {
    "PENDING": RunState.pending,
    "RUNNING": RunState.running,
    "SUCCEEDED": RunState.succeeded,
    "FAILED": RunState.failed,
    "STOPPED": RunState.cancelled,
}
_MESSAGE_CHARS = 4000  # Ray puts up to 20,000 characters of log into a failed job's message


class RayBackendError(RuntimeError):
    """The Ray head could not be reached, or answered something this backend cannot use."""


class RayBackend:
    name = "ray"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        command: Sequence[str] | None = None,
        address: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.address = _dashboard_url(address or self.settings.ray_head_address)
        # Seed 000's FINETUNING_SCRIPT_PATH names the entrypoint (default `ministudio-train`); an explicit command wins.
        self.command = list(command) if command is not None else shlex.split(self.settings.finetuning_script_path)
        self._client = httpx.Client(
            base_url=self.address, timeout=self.settings.ray_request_timeout_seconds, transport=transport
        )

    # --- the protocol ---------------------------------------------------------------------------------------
    def submit(self, run_name: str, spec: TrainingSpec) -> RunStatus:
        existing = self._job(run_name)
        if existing is not None:
            return _to_status(run_name, existing)
        body = self._submission(run_name, spec)
        response = self._request("POST", "/api/jobs/", json=body, expect=())
        if response.status_code == httpx.codes.OK:
            return RunStatus(run_name, RunState.pending, backend_id=response.json().get("submission_id", run_name))
        if "already exists" in response.text:  # a concurrent submit won between our GET and POST
            return self.status(run_name)
        raise self._refused("POST", "/api/jobs/", response)

    def status(self, run_name: str) -> RunStatus:
        job = self._job(run_name)
        return RunStatus(run_name, RunState.missing) if job is None else _to_status(run_name, job)

    def cancel(self, run_name: str) -> RunStatus:
        return stop_unless_settled(self.status, run_name, self._stop)

    def _stop(self, run_name: str) -> None:
        # A job that ended meanwhile answers {"stopped": false}, one deleted meanwhile 404: status then says which.
        self._request("POST", f"/api/jobs/{run_name}/stop", expect=(httpx.codes.OK, httpx.codes.NOT_FOUND))

    def logs(self, run_name: str, tail: int = 200) -> str:
        path = f"/api/jobs/{run_name}/logs"
        response = self._request("GET", path, expect=(httpx.codes.OK, httpx.codes.NOT_FOUND))
        if response.status_code == httpx.codes.NOT_FOUND or tail <= 0:
            return ""
        return "\n".join(str(response.json().get("logs", "")).splitlines()[-tail:])

    def cluster_status(self) -> dict[str, Any]:
        """Seed 000/001: the cluster's resources, or a stub that says why when the Ray head cannot be reached."""
        try:
            return self._cluster_status()
        except RayBackendError as exc:
            return unavailable_status(self.name, str(exc), address=self.address)

    def _cluster_status(self) -> dict[str, Any]:
        data = self._request("GET", "/api/cluster_status").json().get("data", {})
        report = (data.get("clusterStatus") or {}).get("loadMetricsReport") or {}
        usage: dict[str, list[float]] = report.get("usage") or {}
        if not usage:  # the autoscaler monitor has not reported yet: totals only, from the node table
            usage = {key: [math.nan, total] for key, total in self._node_totals().items()}
        jobs = self._request("GET", "/api/jobs/").json()
        by_state: dict[str, list[str]] = {"RUNNING": [], "PENDING": []}
        for job in jobs:
            if job.get("status") in by_state and job.get("submission_id"):
                by_state[job["status"]].append(job["submission_id"])
        return {
            "backend": self.name,
            "address": self.address,
            "cpu": _resource(usage, "CPU"),
            "memory": {f"{k}_bytes": v for k, v in _resource(usage, "memory").items()},
            "gpu": _resource(usage, "GPU"),
            "runs": {"running": by_state["RUNNING"], "queued": by_state["PENDING"]},
        }

    def close(self) -> None:
        self._client.close()

    # --- helpers ----------------------------------------------------------------------------------------------
    def _submission(self, run_name: str, spec: TrainingSpec) -> dict[str, Any]:
        s = self.settings
        spec_json = json.dumps(spec.to_json(), separators=(",", ":"))
        env_vars = {name: os.environ[name] for name in s.ray_env_passthrough if os.environ.get(name)}
        env_vars.update({"AWS_REGION": s.aws_region, "AWS_DEFAULT_REGION": s.aws_region})
        if s.aws_endpoint_url:
            env_vars["AWS_ENDPOINT_URL"] = s.aws_endpoint_url
        # Ray reads the stop grace from the supervisor's environment, which is this job's runtime_env.
        env_vars["RAY_JOB_STOP_WAIT_TIME_S"] = str(max(1, math.ceil(s.cancel_grace_seconds)))
        runtime_env = dict(s.ray_runtime_env)
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **env_vars}
        body: dict[str, Any] = {
            "entrypoint": shlex.join([*self.command, "--spec-json", spec_json]),
            "submission_id": run_name,
            "runtime_env": runtime_env,
            "metadata": {"job_id": spec.job_id, "tenant": spec.tenant},
            "entrypoint_num_cpus": s.ray_entrypoint_num_cpus,
        }
        # One trainer process holds its GPUs itself; a distributed job's entrypoint is the Ray Train driver, which
        # holds none: its TorchTrainer asks Ray for a GPU (and CPUs) per training worker.
        compute = spec.effective_compute
        gpus = 0 if compute.distributed else max(s.ray_entrypoint_num_gpus, compute.gpus_per_worker)
        if gpus:
            body["entrypoint_num_gpus"] = gpus
        return body

    def _job(self, run_name: str) -> dict[str, Any] | None:
        path = f"/api/jobs/{run_name}"
        response = self._request("GET", path, expect=(httpx.codes.OK, httpx.codes.NOT_FOUND))
        return None if response.status_code == httpx.codes.NOT_FOUND else dict(response.json())

    def _node_totals(self) -> dict[str, float]:
        nodes = self._request("GET", "/nodes", params={"view": "summary"}).json().get("data", {}).get("summary", [])
        totals: dict[str, float] = {}
        for node in nodes:
            raylet = node.get("raylet") or {}
            if raylet.get("state", "ALIVE") == "ALIVE":
                for key, value in (raylet.get("resourcesTotal") or {}).items():
                    totals[key] = totals.get(key, 0.0) + float(value)
        return totals

    def _request(
        self, method: str, path: str, *, expect: Sequence[int] = (httpx.codes.OK,), **kwargs: Any
    ) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise RayBackendError(
                f"the Ray head at {self.address} (RAY_HEAD_ADDRESS) did not answer {method} {path} "
                f"within {self.settings.ray_request_timeout_seconds:g}s"
            ) from exc
        except httpx.TransportError as exc:
            raise RayBackendError(
                f"cannot reach the Ray head at {self.address} (RAY_HEAD_ADDRESS): {exc or type(exc).__name__}; "
                "is the Ray dashboard running and is RAY_HEAD_ADDRESS its HTTP address (port 8265)?"
            ) from exc
        if expect and response.status_code not in expect:
            raise self._refused(method, path, response)
        return response

    def _refused(self, method: str, path: str, response: httpx.Response) -> RayBackendError:
        text = response.text.strip().splitlines()
        return RayBackendError(
            f"the Ray head at {self.address} (RAY_HEAD_ADDRESS) answered {response.status_code} to {method} {path}: "
            f"{text[-1][:500] if text else '(empty body)'}"
        )


def unavailable_status(backend: str, reason: str, **extra: Any) -> dict[str, Any]:
    """Seed 001's stub when the cluster is unavailable: the same keys, unknown capacity, and the reason."""
    unknown = {"total": None, "available": None}
    return {
        "backend": backend,
        **extra,
        "available": False,
        "reason": reason,
        "cpu": unknown,
        "memory": {"total_bytes": None, "available_bytes": None},
        "gpu": unknown,
        "runs": {"running": [], "queued": []},
    }


def create_backend(settings: Settings) -> RayBackend:
    return RayBackend(settings)


def _dashboard_url(address: str | None) -> str:
    if not address or not address.strip():
        raise RayBackendError(
            "RAY_HEAD_ADDRESS is not set: give the Ray dashboard's address, e.g. http://127.0.0.1:8265"
        )
    address = address.strip().rstrip("/")
    if address.startswith("ray://"):
        raise RayBackendError(
            f"RAY_HEAD_ADDRESS={address} is a Ray Client address; the ray backend needs the dashboard's HTTP address "
            "(port 8265), e.g. http://head-svc:8265"
        )
    return address if "://" in address else f"http://{address}"  # KubeRay service names come without a scheme


def _to_status(run_name: str, job: dict[str, Any]) -> RunStatus:
    ray_status = str(job.get("status"))
    state = _STATES.get(ray_status, RunState.running)  # an unknown (newer) status: keep polling, never terminal
    message = job.get("message") or None
    if message and len(message) > _MESSAGE_CHARS:  # keep the reason (first line) and the end of the log
        first, _, rest = message.partition("\n")
        message = f"{first}\n…\n{rest[-(_MESSAGE_CHARS - len(first)) :]}"
    code = job.get("driver_exit_code")
    return RunStatus(run_name, state, message, code if isinstance(code, int) else None, job.get("submission_id"))


def _resource(usage: dict[str, list[float]], key: str) -> dict[str, float | None]:
    used, total = (usage.get(key) or [0.0, 0.0])[:2]
    available = None if math.isnan(used) else max(0.0, total - used)
    return {"total": total, "available": available}
