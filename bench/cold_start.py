"""Cold start: import time of the Lambda entry points against a bare FastAPI + Mangum app, in fresh processes.

Goal (issue #3): importing `functions.api.handler` and each worker takes ≤ 1.3x the bare app's import.
Runs are interleaved (baseline, targets, baseline, ...) so machine noise hits all alike; medians are reported.

The API handler builds its app on first use (SnapStart's before-snapshot hook builds it, so a restored container
has it). "api first event" is reported beside the goal, not in it: import plus building the app, what the first
event pays where SnapStart is off (`$LATEST`, `sam local invoke`).
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "import fastapi, mangum\napp = fastapi.FastAPI()\nhandler = mangum.Mangum(app, lifespan='off')"
TARGETS = {
    "api handler": "import functions.api.handler",
    "ingest worker": "import functions.workers.ingest",
}
REPORTED = {"api first event (no SnapStart)": "import functions.api.handler as h\nh.build()"}
GOAL = 1.3
TIMER = "import time\n_t = time.perf_counter()\n{code}\nprint(time.perf_counter() - _t)"


def measure(code: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", TIMER.format(code=code)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    compileall.compile_dir(str(ROOT / "functions"), quiet=1)
    measured = {**TARGETS, **REPORTED}
    for code in (BASELINE, *measured.values()):  # warm the OS page cache and the bytecode
        measure(code)
    samples: dict[str, list[float]] = {"baseline": [], **{name: [] for name in measured}}
    for _ in range(args.runs):
        samples["baseline"].append(measure(BASELINE))
        for name, code in measured.items():
            samples[name].append(measure(code))
    base = statistics.median(samples["baseline"])
    print(f"bare FastAPI+Mangum import: {base * 1000:.0f} ms (median of {args.runs})")
    ok = True
    for name in TARGETS:
        value = statistics.median(samples[name])
        ratio = value / base
        ok &= ratio <= GOAL
        print(f"{name}: {value * 1000:.0f} ms = {ratio:.2f}x baseline (goal <= {GOAL}x)")
    for name in REPORTED:
        value = statistics.median(samples[name])
        print(f"{name}: {value * 1000:.0f} ms = {value / base:.2f}x baseline (reported, not a goal)")
    print(f"cold start: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
