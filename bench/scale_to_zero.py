"""Scale to zero on the local platform with SmolLM2: how long a woken deployment keeps its first caller waiting.

The platform runs as `make run` runs it (the reconciler every second here, so a deployment with `min_replicas: 0`
and `idle_seconds: 5` goes idle about 5 s after its last request). Measured in the same run:
- server start → ready: `ministudio-serve` from its spawn to its first /ready 200 (the supervisor's record in the
  deployment's state.json), loading the cached converted model (FINDINGS.md: ~2.4 s);
- warm first token: a streamed chat to the ready deployment, to its first content chunk;
- idle → first token: the same chat sent to the idle deployment (server process stopped): the proxy holds it while
  one server starts, then streams it.
Goals (issue #16): start → ready <= 3 s, idle → first token <= 5 s (medians of `--wakes`). Options: `--help`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

READY_GOAL_S = 3.0
FIRST_TOKEN_GOAL_S = 5.0
BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
BODY = {"model": BASE, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8, "stream": True}


def first_token(api: httpx.Client) -> float:
    """Seconds from sending a streamed chat to its first content chunk (the rest is read and checked)."""
    started = time.perf_counter()
    first = None
    with api.stream("POST", "/v1/chat/completions", json=BODY) as answer:
        if answer.status_code != 200:
            raise RuntimeError(f"chat answered {answer.status_code}: {answer.read()!r}")
        for line in answer.iter_lines():
            if first is None and line.startswith("data: {") and '"content":"' in line.replace(" ", ""):
                first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("the stream had no content")
    return first


def wait(what: str, check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wakes", type=int, default=3, help="idle → first token rounds (default %(default)s)")
    parser.add_argument("--warm", type=int, default=5, help="warm first-token requests (default %(default)s)")
    parser.add_argument("--no-standby", action="store_true", help="wake without a pre-imported standby server")
    options = parser.parse_args(argv)
    from ministudio_common import loader

    from functions.compute.machine import process_key
    from functions.core.settings import get_settings
    from functions.local.procs import free_port
    from functions.local.runtime import Platform

    loader.resolve(BASE)  # the converted copy is cached once (a GGUF parse takes ~15 s); servers load that copy
    work = Path(tempfile.mkdtemp(prefix="bench-zero-"))
    os.environ["LOCAL_SERVING_DIR"] = str(work / "serving")
    os.environ["LOCAL_SERVING_STANDBY"] = "0" if options.no_standby else "1"
    get_settings.cache_clear()
    platform = Platform(free_port(), log_dir=str(work / "logs"), print_fn=lambda _: None, reconcile_seconds=1)
    platform.start()
    try:
        api = httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {platform.demo_key}"}, timeout=120)
        made = api.post("/v1/deployments", json={"model": BASE, "min_replicas": 0, "idle_seconds": 5}).json()
        folder = Path(get_settings().local_serving_dir or "") / made["name"]

        def status() -> str:
            return str(api.get(f"/v1/deployments/{made['id']}").json()["status"])

        def state() -> dict[str, Any]:
            return dict(json.loads((folder / "state.json").read_text()))

        wait("ready", lambda: status() == "ready" and "ready_since" in state(), 300)
        starts = [state()["ready_since"] - state()["started_at"]]
        warm = sorted(first_token(api) for _ in range(options.warm))
        woken = []
        for _ in range(options.wakes):
            wait("idle", lambda: status() == "idle" and process_key(state()["pid"]) != state()["pid_key"], 60)
            if not options.no_standby:  # the standby started once the last server was ready: let it finish importing
                wait("standby", lambda: (work / "serving" / ".standby" / "warm").exists(), 120)
            woken.append(first_token(api))
            wait("ready", lambda: "ready_since" in state(), 30)
            starts.append(state()["ready_since"] - state()["started_at"])
    finally:
        platform.stop()
    cold, starts = starts[0], starts[1:]  # the first start had no standby to take
    ready_s, warm_s, idle_s = statistics.median(starts), statistics.median(warm), statistics.median(woken)
    ok_ready, ok_token = ready_s <= READY_GOAL_S, idle_s <= FIRST_TOKEN_GOAL_S
    print(
        f"server start -> ready p50 {ready_s:5.2f} s  goal <= {READY_GOAL_S:g} s  {'PASS' if ok_ready else 'FAIL'}  "
        f"(each wake-up: {', '.join(f'{s:.2f}' for s in starts)}; "
        f"{'without' if options.no_standby else 'with'} a standby; the first, cold start: {cold:.2f})"
    )
    print(
        f"idle -> first token p50 {idle_s:5.2f} s  goal <= {FIRST_TOKEN_GOAL_S:g} s  {'PASS' if ok_token else 'FAIL'}  "
        f"(each: {', '.join(f'{s:.2f}' for s in woken)}); warm first token p50 {warm_s * 1000:.0f} ms, "
        f"so waking costs {idle_s - warm_s:.2f} s ({idle_s / warm_s:.0f}x)"
    )
    return 0 if ok_ready and ok_token else 1


if __name__ == "__main__":
    sys.exit(main())
