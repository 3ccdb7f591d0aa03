"""`ministudio`: the command line. `ministudio run` starts the local platform (what `make run` calls)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ministudio", description="Mini Studio command line")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the whole platform locally (moto, redis-server, API, workers)")
    run.add_argument("--port", type=int, default=None, help="API port (default: PORT or 8000)")
    args = parser.parse_args(argv)
    if args.command == "run":
        from functions.local.runtime import main as run_main

        run_main(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
