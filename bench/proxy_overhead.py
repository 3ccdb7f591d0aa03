"""Control-plane proxy overhead: p50 latency of POST /v1/chat/completions through the control plane (auth, rate
limit, Redis-cached routing, forward, usage log) minus the same request sent straight to the inference server.

The platform runs as `make run` runs it (moto, redis-server, uvicorn, the local serving backend); the deployment
serves a tiny random Llama with SmolLM2's tokenizer and each request asks for one token, so generation time is
small and the difference is the proxy's. Direct and proxied calls alternate, so drift on a shared machine hits both.

Goal: the proxy adds <= 5 ms p50.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_MS = 5.0
ROUNDS = int(os.environ.get("BENCH_PROXY_ROUNDS", "300"))


def _tiny_model(folder: Path) -> Path:
    from ministudio_common import loader
    from ministudio_serve.testing import BASE, tiny_model
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(loader.resolve(BASE))
    tiny_model(len(tokenizer)).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def main() -> int:
    from functions.core.settings import get_settings
    from functions.local.procs import free_port
    from functions.local.runtime import Platform

    work = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    model = str(_tiny_model(work / "tiny"))
    os.environ["BASE_MODELS"] = json.dumps([model])
    os.environ["LOCAL_SERVING_DIR"] = str(work / "serving")
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
        direct = httpx.Client(
            base_url=d["endpoint"],
            headers={"Authorization": f"Bearer {key.get_secret_value()}"} if key else {},
            timeout=60,
        )
        body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0}

        def timed(client: httpx.Client) -> float:
            started = time.perf_counter()
            response = client.post("/v1/chat/completions", json=body)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(response.text)
            return elapsed

        for _ in range(20):  # warm both paths: connections, caches, the engine
            timed(direct), timed(api)
        direct_ms, proxied_ms = [], []
        for _ in range(ROUNDS):
            direct_ms.append(timed(direct))
            proxied_ms.append(timed(api))
        d50, p50 = statistics.median(direct_ms), statistics.median(proxied_ms)
        overhead = p50 - d50
        ok = overhead <= GOAL_MS
        print(
            f"proxy overhead p50 {overhead:6.2f} ms  goal <= {GOAL_MS:.0f} ms  {'PASS' if ok else 'FAIL'}  "
            f"(direct p50 {d50:.2f} ms, through the control plane {p50:.2f} ms, ratio {p50 / d50:.2f}x, "
            f"{ROUNDS} alternating rounds)",
            flush=True,
        )
        return 0 if ok else 1
    finally:
        platform.stop()


if __name__ == "__main__":
    sys.exit(main())
