"""`ministudio jobs create | list | watch | cancel`: fine-tuning from a terminal, through the same HTTP API."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from functions.cli.api import Api, ApiError, common_flags, dump, say, table
from functions.cli.files import upload

__all__ = ["Api", "create", "list_jobs", "register", "render", "watch"]

TERMINAL = {"succeeded", "failed", "cancelled"}


def register(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="fine-tuning jobs").add_subparsers(dest="action", required=True)
    flags = common_flags()
    create_ = jobs.add_parser("create", parents=[flags], help="upload a JSONL file (or name a file id) and start a job")
    create_.add_argument("training", help="a .jsonl path or a file id")
    create_.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    create_.add_argument("--validation", help="a .jsonl path or a file id")
    create_.add_argument("--suffix")
    create_.add_argument("--hyperparameters", default="{}", help="JSON, e.g. '{\"n_epochs\": 2}'")
    create_.add_argument("--watch", action="store_true", help="then watch it until it ends")
    create_.set_defaults(handler=_create)
    listing = jobs.add_parser("list", parents=[flags], help="your most recent jobs")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(handler=_list)
    watch_ = jobs.add_parser("watch", parents=[flags], help="a live progress bar with loss and ETA until the job ends")
    watch_.add_argument("job_id")
    watch_.add_argument("--interval", type=float, default=2.0)
    watch_.set_defaults(handler=_watch)
    cancel = jobs.add_parser("cancel", parents=[flags], help="cancel a queued or running job")
    cancel.add_argument("job_id")
    cancel.set_defaults(handler=_cancel)


def _file_id(api: Api, name: str, out: TextIO | None) -> str:
    if not Path(name).is_file():
        return name
    file_id = str(upload(api, Path(name), "fine-tune")["id"])
    if out is not None:
        out.write(f"uploaded {name} as {file_id}\n")
    return file_id


def create(
    api: Api,
    model: str,
    training: str,
    hyper: dict[str, Any],
    suffix: str | None,
    out: TextIO | None,
    validation: str | None = None,
) -> dict[str, Any]:
    """Start a job (uploading local files first); `out` gets one line per step, None for --json."""
    body: dict[str, Any] = {"model": model, "training_file": _file_id(api, training, out)}
    if validation:
        body["validation_file"] = _file_id(api, validation, out)
    if hyper:
        body["hyperparameters"] = hyper
    if suffix:
        body["suffix"] = suffix
    job = dict(api.call("POST", "/v1/fine_tuning/jobs", json=body))
    if out is not None:
        out.write(f"{job['id']}  {job['status']}\n")
    return job


def list_jobs(api: Api, limit: int, out: TextIO) -> None:
    jobs = api.call("GET", "/v1/fine_tuning/jobs", params={"limit": limit})["data"]
    rows = [[j["id"], j["status"], j["model"], j.get("fine_tuned_model") or "-"] for j in jobs]
    table(rows, ["ID", "STATUS", "MODEL", "FINE-TUNED MODEL"], out)


def render(job: dict[str, Any], width: int = 30) -> str:
    """One status line: a progress bar with step, loss and ETA while running; the outcome when done (no terminal)."""
    status = job["status"]
    progress = job.get("progress") or {}
    step, total = progress.get("step") or 0, progress.get("total_steps") or 0
    if status in TERMINAL:
        return f"{job['id']} {status}: {_outcome(job)}"
    if not total:
        return f"{job['id']} {status}"
    done = min(width, int(width * step / total))
    bar = "#" * done + "-" * (width - done)
    parts = [f"[{bar}] {step}/{total}", *_metrics(progress)]
    eta = progress.get("eta_seconds")
    if isinstance(eta, int | float):
        parts.append(f"eta {int(eta)}s")
    return f"{job['id']} {status} " + "  ".join(parts)


def _outcome(job: dict[str, Any]) -> str:
    return str(job.get("fine_tuned_model") or (job.get("error") or {}).get("message") or "")


def _metrics(progress: dict[str, Any]) -> list[str]:
    parts = []
    if isinstance(progress.get("loss"), int | float):
        parts.append(f"loss {progress['loss']:.4f}")
    if isinstance(progress.get("eval_loss"), int | float):
        parts.append(f"eval {progress['eval_loss']:.4f}")
    return parts


def watch(api: Api, job_id: str, interval: float, out: TextIO = sys.stdout, timeout: float | None = None) -> int:
    """Follow the job until it ends; exit code 0 only when it succeeded. A terminal gets a rich progress bar with
    loss and ETA; a pipe gets one line per change (render)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    live = _LiveBar(job_id, out) if out.isatty() else None
    last = ""
    try:
        while True:
            job = api.call("GET", f"/v1/fine_tuning/jobs/{job_id}")
            if live is not None:
                live.update(job)
            elif (line := render(job)) != last:
                out.write(line + "\n")
                out.flush()
                last = line
            if job["status"] in TERMINAL:
                if live is not None:
                    live.stop()
                    out.write(render(job) + "\n")
                return 0 if job["status"] == "succeeded" else 1
            if deadline is not None and time.monotonic() > deadline:
                out.write("gave up waiting\n")
                return 2
            time.sleep(interval)
    finally:
        if live is not None:
            live.stop()


class _LiveBar:
    """rich's Progress: bar, step/total, status with loss, and the ETA the trainer reports (`eta_seconds`)."""

    def __init__(self, job_id: str, out: TextIO) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=Console(file=out),
            transient=True,
        )
        self.task = self.progress.add_task(job_id, total=None, metrics="")
        self.progress.start()

    def update(self, job: dict[str, Any]) -> None:
        progress = job.get("progress") or {}
        total = progress.get("total_steps") or None
        eta = progress.get("eta_seconds")
        metrics = "  ".join([job["status"], *_metrics(progress), *([f"eta {int(eta)}s"] if eta is not None else [])])
        self.progress.update(self.task, total=total, completed=progress.get("step") or 0, metrics=metrics)
        self.progress.refresh()  # draw each poll now, not at the next auto-refresh

    def stop(self) -> None:
        self.progress.stop()


def _create(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    try:
        hyper = json.loads(args.hyperparameters)
    except json.JSONDecodeError as exc:
        raise ApiError(0, f"--hyperparameters is not JSON: {exc}") from None
    job = create(api, args.model, args.training, hyper, args.suffix, None if args.json else out, args.validation)
    if args.json:
        dump(job, out)
    return watch(api, job["id"], 2.0, out) if args.watch and not args.json else 0


def _list(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    if args.json:
        dump(api.call("GET", "/v1/fine_tuning/jobs", params={"limit": args.limit}), out)
    else:
        list_jobs(api, args.limit, out)
    return 0


def _watch(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    if not args.json:
        return watch(api, args.job_id, args.interval, out)
    while (job := api.call("GET", f"/v1/fine_tuning/jobs/{args.job_id}"))["status"] not in TERMINAL:
        time.sleep(args.interval)
    dump(job, out)
    return 0 if job["status"] == "succeeded" else 1


def _cancel(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    job = api.call("POST", f"/v1/fine_tuning/jobs/{args.job_id}/cancel")
    say(job, f"{job['id']}  {job['status']}", args.json, out)
    return 0
