"""Classical-model predictions (seed 004, profile `tabular`): `/predict` p50 with the Redis cache vs without it.

Run from the repository root:  .venv/bin/python bench/tabular_predict.py [--requests 300]  (~1 min)

Two `ministudio-serve --profile tabular` processes on one directory store with the demo's versions (scikit-learn
logistic regression, XGBoost), one with REDIS_URL (a real redis-server), one without. For each model type the same
input is sent to both servers in alternation over keep-alive HTTP, so machine noise hits both sides alike; after its
first request the cached server answers from Redis. Prints each side's p50 and the ratio uncached / cached.
Goal: ratio >= 0.9 for every type, i.e. the cache never makes a prediction slower than computing it (a 1-row
logistic regression costs about what a Redis round trip does; the gain grows with the model). Exits non-zero only
when a goal is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ministudio_serve.tabular.demo import register_direct, train_versions  # noqa: E402

from functions.local.procs import free_port, start_redis  # noqa: E402

GOAL = 0.9
TYPES = ("logistic_regression", "xgboost")


def start_server(store: Path, workdir: Path, redis_url: str | None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [sys.executable, "-m", "ministudio_serve.cli", "--profile", "tabular", "--port", str(port), "--insecure-dev"]
    argv += [
        "--tabular-store",
        str(store),
        "--request-log",
        str(workdir / f"log-{port}.sqlite"),
        "--log-level",
        "WARNING",
    ]
    if redis_url:
        argv += ["--redis-url", redis_url]
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "REDIS_URL", "API_KEY", "TABULAR_STORE")}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("tabular server did not become ready")


def p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300, help="per model type and server")
    args = parser.parse_args()
    versions = train_versions()
    samples = {v.model_type: v.sample for v in versions}
    ok = True
    with tempfile.TemporaryDirectory() as tmp, start_redis() as redis_child:
        work = Path(tmp)
        register_direct(str(work / "store"), "default", versions)
        cached_proc, cached_url = start_server(work / "store", work, redis_child.url)
        plain_proc, plain_url = start_server(work / "store", work, None)
        try:
            with (
                httpx.Client(base_url=cached_url, timeout=120) as cached,
                httpx.Client(base_url=plain_url, timeout=120) as plain,
            ):
                for model_type in TYPES:
                    body = {"input_data": samples[model_type]}
                    path = f"/predict/{model_type}"
                    for client in (cached, plain):  # warm: load the model, fill the cache, open connections
                        for _ in range(5):
                            client.post(path, json=body).raise_for_status()
                    times: dict[str, list[float]] = {"cached": [], "uncached": []}
                    hits = 0
                    for _ in range(args.requests):
                        for name, client in (("cached", cached), ("uncached", plain)):
                            started = time.perf_counter()
                            response = client.post(path, json=body)
                            times[name].append(time.perf_counter() - started)
                            response.raise_for_status()
                            hits += name == "cached" and response.json()["cached"]
                    if hits != args.requests:
                        print(f"{model_type}: only {hits}/{args.requests} cache hits")
                        ok = False
                    with_cache, without = p50_ms(times["cached"]), p50_ms(times["uncached"])
                    ratio = without / with_cache
                    ok &= ratio >= GOAL
                    print(
                        f"{model_type}: /predict p50 {with_cache:.2f} ms with the cache, {without:.2f} ms without"
                        f" = {ratio:.2f}x (goal >= {GOAL}x)"
                    )
        finally:
            for process in (cached_proc, plain_proc):
                process.terminate()
                process.wait(timeout=10)
    print(f"tabular predict: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
