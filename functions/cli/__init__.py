"""`ministudio`: the command line. `ministudio run` starts the local platform (what `make run` calls); the other
commands (files, jobs, models, deploy, deployments, chat, usage) use the public API (functions/cli/api.py:
MINISTUDIO_API_URL or --url, MINISTUDIO_API_KEY or --api-key), one module per area."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Any, TextIO


def _areas() -> list[ModuleType]:
    from functions.cli import chat, files, jobs, models

    return [files, jobs, models, chat]


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
    for area in _areas():
        area.register(sub)
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None, http: Any = None) -> int:
    """`http`: a client for the API (tests hand in FastAPI's TestClient); `out`: where results go (stdout)."""
    args = _parser().parse_args(argv)
    if args.command == "run":
        from functions.local.runtime import main as run_main

        run_main(args.port, prometheus=args.prometheus, fresh=args.fresh)
        return 0
    from functions.cli.api import Api, ApiError

    try:
        return int(args.handler(Api(args.url, args.api_key, http=http), args, out or sys.stdout))
    except ApiError as error:
        sys.stderr.write(f"{error}\n")
        return 1
