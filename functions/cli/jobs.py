"""`ministudio jobs create | list | watch`: fine-tuning from a terminal, through the same HTTP API as everyone."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

TERMINAL = {"succeeded", "failed", "cancelled"}


class Api:
    def __init__(self, base_url: str | None = None, key: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = (base_url or os.environ.get("MINISTUDIO_BASE_URL") or "http://127.0.0.1:8000").rstrip("/")
        key = key or os.environ.get("MINISTUDIO_API_KEY")
        if not key:
            raise SystemExit("set MINISTUDIO_API_KEY (a tenant key; `make run` prints the demo tenant's)")
        self.client = httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        body = response.json()
        if response.status_code >= 400:
            error = body.get("error") if isinstance(body, dict) else None
            message = error.get("message") if isinstance(error, dict) else error
            raise SystemExit(f"error {response.status_code}: {message or body}")
        return body


def create(api: Api, model: str, training: str, hyper: dict[str, Any], suffix: str | None, out: TextIO) -> str:
    file_id = training
    if Path(training).is_file():
        with open(training, "rb") as handle:
            uploaded = api.call(
                "POST", "/v1/files", data={"purpose": "fine-tune"}, files={"file": (Path(training).name, handle)}
            )
        file_id = uploaded["id"]
        out.write(f"uploaded {training} as {file_id}\n")
    body: dict[str, Any] = {"model": model, "training_file": file_id}
    if hyper:
        body["hyperparameters"] = hyper
    if suffix:
        body["suffix"] = suffix
    job = api.call("POST", "/v1/fine_tuning/jobs", json=body)
    out.write(f"{job['id']}  {job['status']}\n")
    return str(job["id"])


def list_jobs(api: Api, limit: int, out: TextIO) -> None:
    jobs = api.call("GET", "/v1/fine_tuning/jobs", params={"limit": limit})["data"]
    out.write(f"{'ID':32} {'STATUS':16} {'MODEL':40} FINE-TUNED MODEL\n")
    for job in jobs:
        out.write(f"{job['id']:32} {job['status']:16} {job['model']:40} {job.get('fine_tuned_model') or '-'}\n")


def render(job: dict[str, Any], width: int = 30) -> str:
    """One status line: a progress bar with step, loss and ETA while running; the outcome when done."""
    status = job["status"]
    progress = job.get("progress") or {}
    step, total = progress.get("step") or 0, progress.get("total_steps") or 0
    if status in TERMINAL:
        detail = job.get("fine_tuned_model") or (job.get("error") or {}).get("message") or ""
        return f"{job['id']} {status}: {detail}"
    if not total:
        return f"{job['id']} {status}"
    done = min(width, int(width * step / total))
    bar = "#" * done + "-" * (width - done)
    loss = progress.get("loss")
    eta = progress.get("eta_seconds")
    parts = [f"[{bar}] {step}/{total}"]
    if isinstance(loss, int | float):
        parts.append(f"loss {loss:.4f}")
    if isinstance(progress.get("eval_loss"), int | float):
        parts.append(f"eval {progress['eval_loss']:.4f}")
    if isinstance(eta, int | float):
        parts.append(f"eta {int(eta)}s")
    return f"{job['id']} {status} " + "  ".join(parts)


def watch(api: Api, job_id: str, interval: float, out: TextIO = sys.stdout, timeout: float | None = None) -> int:
    """Redraw the job's line until it ends; exit code 0 only when it succeeded."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = ""
    while True:
        job = api.call("GET", f"/v1/fine_tuning/jobs/{job_id}")
        line = render(job)
        if line != last:
            out.write(("\r" if out.isatty() else "") + line + ("" if out.isatty() else "\n"))
            out.flush()
            last = line
        if job["status"] in TERMINAL:
            if out.isatty():
                out.write("\n")
            return 0 if job["status"] == "succeeded" else 1
        if deadline is not None and time.monotonic() > deadline:
            out.write("\ngave up waiting\n")
            return 2
        time.sleep(interval)
