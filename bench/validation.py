"""Dataset validation: throughput against a plain json.loads loop, and peak memory at two file sizes.

    .venv/bin/python bench/validation.py [--mb 200]

Goals: validate_stream >= 1.5x the MB/s of `for line in f: json.loads(line)` over the same chat-format file
(the faster of text and binary mode is the baseline), and peak RSS growth <= 64 MB at every size measured.
MB here is 10**6 bytes. Exits non-zero only when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from functions.datasets.validate import validate_stream  # noqa: E402

CHUNK = 1 << 20
SPEED_GOAL = 1.5
RSS_GOAL_MB = 64.0

_VOCABULARY = (
    "the a model data train learns token user answer question why how because python cloud deploy adapter "
    "fine tune loss epoch batch gradient value result function returns list error request latency server "
    "cache query index table customer order invoice refund policy shipping account password reset"
)
_WORDS = _VOCABULARY.split()
_SENTENCES = (
    "Voilà, ça marche très bien.",
    "Die Größe der Datei ist über dem Limit.",
    "El niño comió una manzana.",
    "これはテストです。",
    "Done ✅ — see the logs 📄.",
    'He said "use the `--force` flag" and it worked.',
    "def f(x):\n    return x * 2\n",
)


def _text(rng: random.Random, words: int) -> str:
    out = []
    for _ in range(max(1, words // 12)):
        out.append(" ".join(rng.choices(_WORDS, k=12)).capitalize() + rng.choice((". ", "? ", ".\n", "! ")))
        if rng.random() < 0.15:
            out.append(rng.choice(_SENTENCES) + " ")
    return "".join(out).strip()


def _example(rng: random.Random) -> dict[str, object]:
    messages: list[dict[str, object]] = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": _text(rng, rng.randint(10, 60))})
    for _ in range(rng.randint(1, 3)):
        messages.append({"role": "user", "content": _text(rng, rng.randint(8, 120))})
        messages.append({"role": "assistant", "content": _text(rng, rng.randint(20, 250))})
    return {"messages": messages}


def write_dataset(path: Path, size: int, seed: int = 7) -> int:
    """A chat JSONL file of at least `size` bytes, every line distinct; returns the number of examples."""
    rng = random.Random(seed)
    written = examples = 0
    with path.open("wb") as f:
        while written < size:
            line = json.dumps(_example(rng), ensure_ascii=False).encode() + b"\n"
            f.write(line)
            written += len(line)
            examples += 1
    return examples


def baseline_text(path: Path) -> None:
    with path.open(encoding="utf-8") as f:
        for line in f:
            json.loads(line)


def baseline_binary(path: Path) -> None:
    with path.open("rb") as f:
        for line in f:
            json.loads(line)


def run_validate(path: Path) -> object:
    with path.open("rb") as f:
        return validate_stream(iter(lambda: f.read(CHUNK), b""))


def _timed(fn: Callable[[Path], object], path: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds): the second shows how much of a slow run was waiting for a shared CPU."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(path)
    return time.perf_counter() - wall, time.process_time() - cpu


def rss_child(path: Path) -> None:
    """Runs in a fresh process: prints peak RSS growth in MB over one validation.

    Peak after (ru_maxrss) minus the current RSS before: if importing peaked higher than validating, this
    over-states the growth rather than hiding it.
    """
    before = psutil.Process().memory_info().rss
    report = run_validate(path)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"growth_mb": max(0, after - before) / 1e6, "valid": report.valid}))  # type: ignore[attr-defined]


def peak_rss_growth(path: Path) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(path)], check=True, capture_output=True, text=True, cwd=ROOT
    )
    result = json.loads(out.stdout)
    if not result["valid"]:
        raise SystemExit(f"validation rejected the generated file {path}")
    return float(result["growth_mb"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the benchmark file in MB (10**6 bytes)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp:
        big, small = Path(tmp) / "big.jsonl", Path(tmp) / "small.jsonl"
        examples = write_dataset(big, args.mb * 10**6)
        write_dataset(small, max(1, args.mb // 4) * 10**6)
        size_mb = big.stat().st_size / 1e6
        print(f"file: {size_mb:.1f} MB, {examples} chat examples, {size_mb * 1e6 / examples:.0f} bytes/line")

        report = run_validate(big)
        if not (report.valid and report.examples == examples):  # type: ignore[attr-defined]
            print(f"FAIL: the generated file did not validate: {report}")
            return 1

        runs: dict[str, Callable[[Path], object]] = {
            "json.loads (text mode)": baseline_text,
            "json.loads (binary mode)": baseline_binary,
            "validate_stream": run_validate,
        }
        best = {name: (float("inf"), float("inf")) for name in runs}
        for _ in range(args.repeat):  # interleaved, so load from neighbours hits all three alike
            for name, fn in runs.items():
                wall, cpu = _timed(fn, big)
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
        speeds = {name: size_mb / wall for name, (wall, _) in best.items()}
        cpu_speeds = {name: size_mb / cpu for name, (_, cpu) in best.items()}
        for name, speed in speeds.items():
            print(f"{name:26s} {speed:8.1f} MB/s (best of {args.repeat}; {cpu_speeds[name]:.1f} MB per CPU-second)")
        base = max(runs, key=lambda name: speeds[name] if name.startswith("json") else 0.0)
        ratio = speeds["validate_stream"] / speeds[base]
        cpu_ratio = cpu_speeds["validate_stream"] / cpu_speeds[base]
        print(f"baseline: {base}; ratio {ratio:.2f}x by wall clock, {cpu_ratio:.2f}x by CPU time")

        growth = {path.stat().st_size / 1e6: peak_rss_growth(path) for path in (small, big)}
        for mb, grown in growth.items():
            print(f"peak RSS growth validating {mb:.0f} MB: {grown:.1f} MB")
        worst = max(growth.values())

    ok = ratio >= SPEED_GOAL and worst <= RSS_GOAL_MB
    print(
        f"validation: {ratio:.2f}x baseline (goal >= {SPEED_GOAL}x), peak RSS growth {worst:.1f} MB "
        f"(goal <= {RSS_GOAL_MB:.0f} MB): {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
