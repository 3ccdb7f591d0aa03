"""`ministudio`: the command line. `ministudio run` starts the local platform (what `make run` calls);
`ministudio jobs create|list|watch` drive fine-tuning through the API (MINISTUDIO_BASE_URL, MINISTUDIO_API_KEY)."""

from __future__ import annotations

import argparse
import json
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ministudio", description="Mini Studio command line")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the whole platform locally (moto, redis-server, API, workers)")
    run.add_argument("--port", type=int, default=None, help="API port (default: PORT or 8000)")
    run.add_argument(
        "--prometheus",
        action="store_true",
        default=None,
        help="also start Prometheus scraping the API and inference servers (default: LOCAL_PROMETHEUS)",
    )
    run.add_argument(
        "--fresh",
        action="store_true",
        help="empty the data directory first (MINISTUDIO_DATA_DIR, default .ministudio/data): start from nothing",
    )
    jobs = sub.add_parser("jobs", help="fine-tuning jobs").add_subparsers(dest="action", required=True)
    create = jobs.add_parser("create", help="upload a JSONL file (or name a file id) and start a job")
    create.add_argument("training", help="a .jsonl path or a file id")
    create.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    create.add_argument("--suffix")
    create.add_argument("--hyperparameters", default="{}", help="JSON, e.g. '{\"n_epochs\": 2}'")
    create.add_argument("--watch", action="store_true", help="then watch it until it ends")
    listing = jobs.add_parser("list", help="your most recent jobs")
    listing.add_argument("--limit", type=int, default=20)
    watch = jobs.add_parser("watch", help="a live progress bar with loss until the job ends")
    watch.add_argument("job_id")
    watch.add_argument("--interval", type=float, default=2.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        from functions.local.runtime import main as run_main

        run_main(args.port, prometheus=args.prometheus, fresh=args.fresh)
        return 0
    from functions.cli import jobs

    api = jobs.Api()
    if args.action == "create":
        job_id = jobs.create(api, args.model, args.training, json.loads(args.hyperparameters), args.suffix, sys.stdout)
        return jobs.watch(api, job_id, 2.0) if args.watch else 0
    if args.action == "list":
        jobs.list_jobs(api, args.limit, sys.stdout)
        return 0
    return jobs.watch(api, args.job_id, args.interval)
