"""Control-plane proxy overhead: p50 latency of POST /v1/chat/completions through the control plane (auth, rate
limit, Redis-cached routing, forward, usage log) minus the same request sent straight to the inference server.

The platform runs as `make run` runs it (moto, redis-server, uvicorn, the local serving backend); the deployment
serves a tiny random Llama with SmolLM2's tokenizer and each request asks for one token, so generation time is
small and the difference is the proxy's. The server runs with one torch thread and no batching window
(`TORCH_THREADS=1`, `BATCH_TIMEOUT_MS=0`): on a 2-core machine its default of one thread per core competes with the
client and the control plane for both cores, and its 100 ms window for batching an idle server's first request
adds a wait of its own; both blur the pairs with jitter that is the server's, not the proxy's (`--server-defaults`
keeps them, to see that). Direct and proxied calls alternate, and the overhead is the median of each
pair's difference, so drift on a shared machine hits both sides of a pair alike.
It also prints the p50 of what the control plane says it added (`x-ministudio-overhead-duration-ms`: its own time,
from the route's start to the answer, less the wait on the server), which the server's own jitter does not blur.

Goal: the proxy adds <= 3 ms p50 (`--goal-ms`). Options: `--help`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_MS = 3.0
ROUNDS = int(os.environ.get("BENCH_PROXY_ROUNDS", "300"))
HEADER = "x-ministudio-overhead-duration-ms"


def _measure(
    targets: dict[str, tuple[str, str | None]], body: dict[str, object], warmup: int, rounds: int
) -> tuple[list[float], list[float], list[float]]:
    """Alternating direct and proxied calls: their latencies (ms) and the overhead each proxied answer reported."""
    direct, proxied = (
        httpx.Client(base_url=url, headers={"Authorization": auth} if auth else {}, timeout=60)
        for url, auth in (targets["direct"], targets["proxied"])
    )
    said: list[float] = []

    def timed(client: httpx.Client) -> float:
        started = time.perf_counter()
        response = client.post("/v1/chat/completions", json=body)
        response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(response.text)
        if HEADER in response.headers:
            said.append(float(response.headers[HEADER]))
        return elapsed

    for _ in range(warmup):  # warm both paths: connections, caches, the engine
        timed(direct), timed(proxied)
    said.clear()
    direct_ms, proxied_ms = [], []
    for _ in range(rounds):
        direct_ms.append(timed(direct))
        proxied_ms.append(timed(proxied))
    return direct_ms, proxied_ms, said


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="alternating direct/proxied pairs (default %(default)s, env BENCH_PROXY_ROUNDS)",
    )
    parser.add_argument("--warmup", type=int, default=20, help="pairs sent before measuring (default %(default)s)")
    parser.add_argument(
        "--goal-ms",
        type=float,
        default=GOAL_MS,
        help="PASS when the p50 overhead is at most this (default %(default)s)",
    )
    parser.add_argument("--stream", action="store_true", help="stream the answers (time to the whole stream)")
    parser.add_argument(
        "--server-defaults", action="store_true", help="the server's own thread count and batching window"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = _options(argv)
    from functions.core.settings import get_settings
    from functions.local.procs import free_port
    from functions.local.runtime import Platform
    from tests.helpers.tiny_models import tiny_serving_model

    work = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    model = str(tiny_serving_model(work / "tiny"))
    os.environ["BASE_MODELS"] = json.dumps([model])
    os.environ["LOCAL_SERVING_DIR"] = str(work / "serving")
    if not options.server_defaults:  # read by the inference server (TORCH_* passes to it; the window is let through)
        os.environ.update(TORCH_THREADS="1", BATCH_TIMEOUT_MS="0")
        os.environ["LOCAL_CHILD_ENV_PASSTHROUGH"] = json.dumps(["BATCH_TIMEOUT_MS"])
    get_settings.cache_clear()
    platform = Platform(free_port(), log_dir=str(work / "logs"), print_fn=lambda _: None).start()
    try:
        api = httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {platform.demo_key}"}, timeout=60)
        made = api.post("/v1/deployments", json={"model": model}).json()
        deadline = time.monotonic() + 300
        while (d := api.get(f"/v1/deployments/{made['id']}").json())["status"] not in ("ready", "failed"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"deployment not ready: {d}")
            time.sleep(0.3)
        if d["status"] != "ready":
            raise RuntimeError(f"deployment failed: {d['error']}")
        key = get_settings().inference_api_key
        body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0}
        if options.stream:
            body["stream"] = True
        targets = {
            "direct": (d["endpoint"], f"Bearer {key.get_secret_value()}" if key else None),
            "proxied": (platform.url, f"Bearer {platform.demo_key}"),
        }
        # The client runs in a process of its own, as a real one does: in this process it would share the GIL with
        # the control plane (its usage-log writes, its pollers), which no real client does.
        spawn = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            direct_ms, proxied_ms, said = pool.submit(_measure, targets, body, options.warmup, options.rounds).result()
        d50, p50 = statistics.median(direct_ms), statistics.median(proxied_ms)
        # Each proxied call is paired with the direct call just before it: the median of those differences cancels
        # what drifts on a shared machine (another job starting mid-run moves both medians, not the pairs).
        overhead = statistics.median(p - d for d, p in zip(direct_ms, proxied_ms, strict=True))
        ok = overhead <= options.goal_ms
        print(
            f"proxy overhead p50 {overhead:6.2f} ms  goal <= {options.goal_ms:g} ms  {'PASS' if ok else 'FAIL'}  "
            f"(median of {options.rounds} paired differences{', streamed' if options.stream else ''}; direct p50 "
            f"{d50:.2f} ms, through the control plane {p50:.2f} ms, difference of medians {p50 - d50:.2f} ms, "
            f"ratio {p50 / d50:.3f}x); the control plane's own {HEADER} p50 "
            f"{statistics.median(said) if said else float('nan'):.2f} ms",
            flush=True,
        )
        return 0 if ok else 1
    finally:
        platform.stop()


if __name__ == "__main__":
    sys.exit(main())
