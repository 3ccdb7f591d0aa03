"""`make bench`: run every benchmark under bench/ in its own process and summarise PASS/FAIL.

Each benchmark measures its own baseline in the same run and prints ratios, so results hold on a noisy machine.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, check=False).returncode
        print(f"== {script.name}: exit {code} in {time.monotonic() - started:.0f}s\n", flush=True)
        if code:
            failed.append(script.name)
    print("all benchmarks passed" if not failed else f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
