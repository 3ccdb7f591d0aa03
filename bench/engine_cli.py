"""The command line the engine benches share (bench/serving_engine.py, bench/task_batching.py): `--quick` and
`--threads`, the load average before and after (the figures mean little on a busy machine), and the exit code."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn


def run(main: Callable[[bool], Coroutine[Any, Any, int]], description: str | None, quick: str) -> NoReturn:
    """Parse the options, then run `main(quick)` and exit with its code. `quick`: what --quick cuts."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{quick} (noisier figures)")
    # One intra-op thread by default: on the shared 2-core development machine, two threads made a decode step over
    # 8 rows slower than 8 single-row steps (OpenMP waits on cores other jobs hold). Pass --threads 0 for torch's
    # default on a dedicated machine.
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from local files only
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    code = asyncio.run(main(args.quick))
    print(f"load average after: {os.getloadavg()[0]:.1f}; total {time.perf_counter() - started:.0f} s")
    sys.exit(code)
