"""Seed 003's task models through the whole app: throughput batched vs one at a time, ratios from one run.

Run from the repository root:  .venv/bin/python bench/task_batching.py [--quick] [--threads N]  (~2 min; N=1 default)

Two servers in this process, both on the real SmolLM2-135M-Instruct and the packaged all-MiniLM-L6-v2:
  batched    MAX_BATCH_SIZE 8, BATCH_TIMEOUT_MS 100 (the seed's defaults)
  unbatched  MAX_BATCH_SIZE 1, BATCH_TIMEOUT_MS 0 (every item alone, no wait: the fair baseline)
  1. /infer/batch: one request of N mixed items (summarizer and generator on the LLM, sentiment) vs the same items
     sent one at a time to /infer on the unbatched server; items/s, goal >= 2x.
  2. /v1/embeddings: one request of N inputs vs N one-input requests one at a time (unbatched); inputs/s, goal >= 2x.
  3. /v1/embeddings from 8 concurrent clients, one input per request (batched across requests by the dynamic
     batcher) vs the same requests one at a time (unbatched); inputs/s, goal >= 2x.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

TEXTS = [
    "The city council voted to build a new public library downtown; it opens in 2027 and holds 200,000 books.",
    "Researchers found that regular walks improve sleep quality in adults over sixty, according to a new study.",
    "The company reported record profits this quarter, driven by strong sales of its electric bicycles in Europe.",
    "Heavy rain flooded several streets overnight, and the fire brigade pumped water out of forty basements.",
    "I love this AI inference backend! It works perfectly.",
    "The update broke my favourite feature and support never answered. Very disappointing.",
    "The train leaves at nine and arrives in Lyon shortly after noon.",
    "A new species of frog was discovered in the rainforests of northern Peru by a team of biologists.",
]


@asynccontextmanager
async def server(tmp: Path, batch: int, timeout_ms: float) -> AsyncIterator[Any]:
    import httpx
    from ministudio_serve.app import create_app
    from ministudio_serve.settings import ServeSettings

    settings = ServeSettings(
        model="HuggingFaceTB/SmolLM2-135M-Instruct",
        max_batch_size=batch,
        batch_timeout_ms=timeout_ms,
        request_log=tmp / f"requests-{batch}.sqlite",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=600)
        for _ in range(3000):
            tasks = app.state.server.tasks
            if (await client.get("/ready")).status_code == 200 and all(m.loaded for m in tasks.all()):
                break
            await asyncio.sleep(0.1)
        yield client
        await client.aclose()


def items(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        text = TEXTS[i % len(TEXTS)]
        kind = ("summarizer", "generator", "sentiment")[i % 3]
        params = {"max_length": 24, "temperature": 0} if kind != "sentiment" else {}
        out.append({"text": text, "model": kind, "parameters": params})
    return out


async def timed(work: Callable[[], Coroutine[Any, Any, Any]]) -> float:
    started = time.perf_counter()
    await work()
    return time.perf_counter() - started


def ok(reply: Any) -> Any:
    if reply.status_code != 200:
        raise RuntimeError(f"{reply.request.url.path}: {reply.status_code} {reply.text[:200]}")
    return reply.json()


def report(name: str, count: int, together: float, alone: float, goal: float) -> bool:
    ratio = alone / together
    passed = ratio >= goal
    rates = f"{count / together:.1f} vs {count / alone:.1f} items/s"
    print(f"{name:<52} {ratio:5.2f}x  goal >= {goal:<4} {'PASS' if passed else 'FAIL'}  {rates}", flush=True)
    return passed


async def main(quick: bool) -> int:
    n = 12 if quick else 24
    mixed = items(n)
    inputs = [TEXTS[i % len(TEXTS)] + f" ({i})" for i in range(32 if quick else 64)]
    embed = "sentence-transformers/all-MiniLM-L6-v2"
    with tempfile.TemporaryDirectory() as tmp:
        async with server(Path(tmp), 8, 100) as fast, server(Path(tmp), 1, 0) as slow:
            for client in (fast, slow):  # warm-up: first calls allocate and pick kernels
                ok(await client.post("/infer/batch", json={"requests": items(3)}))
                ok(await client.post("/v1/embeddings", json={"model": embed, "input": inputs[:8]}))

            async def batch_call() -> None:
                body = ok(await fast.post("/infer/batch", json={"requests": mixed}))
                assert body["success"], body

            async def one_by_one() -> None:
                for item in mixed:
                    ok(await slow.post("/infer", json=item))

            results = [
                report("1. /infer/batch (mixed models) vs one at a time", n, *await both(batch_call, one_by_one), 2.0)
            ]

            async def embed_all() -> None:
                ok(await fast.post("/v1/embeddings", json={"model": embed, "input": inputs}))

            async def embed_each() -> None:
                for text in inputs:
                    ok(await slow.post("/v1/embeddings", json={"model": embed, "input": text}))

            results.append(
                report(
                    "2. /v1/embeddings, one request of N vs one at a time",
                    len(inputs),
                    *await both(embed_all, embed_each),
                    2.0,
                )
            )

            async def embed_clients() -> None:
                async def client_loop(k: int) -> None:
                    for text in inputs[k::8]:
                        ok(await fast.post("/v1/embeddings", json={"model": embed, "input": text}))

                await asyncio.gather(*(client_loop(k) for k in range(8)))

            results.append(
                report(
                    "3. /v1/embeddings, 8 clients vs one at a time",
                    len(inputs),
                    *await both(embed_clients, embed_each),
                    2.0,
                )
            )
    return 0 if all(results) else 1


async def both(
    together: Callable[[], Coroutine[Any, Any, Any]], alone: Callable[[], Coroutine[Any, Any, Any]]
) -> tuple[float, float]:
    """Alternated twice, so a slow spell on a shared machine hits both sides."""
    t = a = 0.0
    for _ in range(2):
        t += await timed(together)
        a += await timed(alone)
    return t, a


if __name__ == "__main__":
    import engine_cli  # bench/engine_cli.py: this script's folder is on sys.path

    engine_cli.run(main, __doc__, "fewer items")
