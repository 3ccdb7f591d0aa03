"""Serving engine benchmark on the real SmolLM2-135M-Instruct (transformers engine, continuous batching).

Run from the repository root:  .venv/bin/python bench/serving_engine.py [--quick] [--threads N]  (~3 min; N=1 default)

Each ratio compares two loads measured in the same run, on the same engine settings:
  1. throughput: 8 clients sending requests back to back (rows end at EOS or max_tokens) vs one client sending the
     same requests, tokens counted over the same sustained window; goal >= 4x tokens/s.
  2. multi-LoRA: the same closed-loop load with every request on one of 4 adapters (r=8, q/k/v/o) vs on the base
     model; rows run to max_tokens so both loads do equal work; goal >= 0.8x tokens/s.
  3. time to first token: p50 of requests arriving at random moments while 7 other streams decode (8 running
     with the newcomer: steady state, FINDINGS.md) vs the same requests on an idle engine; goal <= 2x.
     BATCH_TIMEOUT_MS is 0 here: a gather window would add the same wait to both sides and hide the comparison.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain gravity to a child.",
    "List three fruits and their colours.",
    "What is 12 times 7?",
    "Give me one tip for sleeping better.",
    "Who wrote Hamlet?",
    "Describe a cat in two sentences.",
    "Why is the sky blue?",
    "Name a famous painter.",
    "What does a compiler do?",
    "Suggest a name for a goldfish.",
    "How many legs does a spider have?",
    "What is photosynthesis?",
    "Tell me a fun fact about octopuses.",
    "What is the boiling point of water?",
]


def _engine(model_dir: Path, **kwargs: Any) -> Any:
    from ministudio_serve.engines.factory import load_transformers

    return load_transformers(model_dir, "HuggingFaceTB/SmolLM2-135M-Instruct", batch_timeout_ms=0, **kwargs)


def _prompt(tokenizer: Any, question: str) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


async def _one(engine: Any, prompt: list[int], sampling: Any, adapter: Any = None) -> tuple[int, float]:
    """Tokens generated and time to first token of one request."""
    from ministudio_serve.engines.base import GenerationRequest

    started, first, tokens = time.perf_counter(), None, 0
    async for chunk in engine.generate(GenerationRequest("b", prompt, sampling, adapter)):
        if first is None:
            first = time.perf_counter() - started
        tokens += len(chunk.token_ids)
    return tokens, first or 0.0


@dataclass
class Load:
    tokens: int = 0
    wall: float = 0.0
    cpu: float = 0.0  # CPU seconds of this process: steadier than wall time when other jobs share the cores
    ttfts: list[float] = field(default_factory=list)

    def __add__(self, other: Load) -> Load:
        return Load(self.tokens + other.tokens, self.wall + other.wall, self.cpu + other.cpu, self.ttfts + other.ttfts)

    def rate(self) -> float:
        return self.tokens / self.wall

    def cpu_rate(self) -> float:
        return self.tokens / self.cpu


async def _closed_loop(engine: Any, jobs: list[tuple[list[int], Any, Any]], clients: int) -> Load:
    """`clients` workers take jobs from one queue, each starting its next request when the last one ends."""
    queue = list(reversed(jobs))
    ttfts: list[float] = []

    async def worker() -> int:
        done = 0
        while queue:
            prompt, sampling, adapter = queue.pop()
            tokens, ttft = await _one(engine, prompt, sampling, adapter)
            ttfts.append(ttft)
            done += tokens
        return done

    started, cpu = time.perf_counter(), time.process_time()
    totals = await asyncio.gather(*(worker() for _ in range(clients)))
    return Load(sum(totals), time.perf_counter() - started, time.process_time() - cpu, ttfts)


async def _sustained(engine: Any, prompts: list[list[int]], sampling: Any, clients: int, seconds: float) -> Load:
    """`clients` send requests back to back for `seconds`; tokens are counted inside that window only, so neither
    a start-up burst nor a tail of stragglers (fewer rows than clients) is in the figure."""
    counted = [0]
    deadline = time.perf_counter() + seconds
    turns = itertools.count()

    async def client() -> None:
        from ministudio_serve.engines.base import GenerationRequest

        while time.perf_counter() < deadline:
            prompt = prompts[next(turns) % len(prompts)]
            async for chunk in engine.generate(GenerationRequest("s", prompt, sampling)):
                if time.perf_counter() >= deadline:
                    return  # closing the stream aborts the request
                counted[0] += len(chunk.token_ids)

    cpu = time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Load(counted[0], seconds, time.process_time() - cpu)


def _ceiling(engine: Any) -> float:
    """How much faster one decode step over 8 rows is than 8 single-row steps, for the bare model on this machine:
    no engine can beat it, so it says what the machine allows at the moment."""
    import torch
    from ministudio_serve.engines.kv_batch import new_cache

    def step_time(rows: int) -> float:
        with torch.inference_mode():
            ids = torch.randint(0, 1000, (rows, 40))
            mask = torch.ones_like(ids)
            cache = new_cache(engine.model.config)
            engine.model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True, logits_to_keep=1)
            times = []
            for i in range(6):
                mask = torch.cat([mask, torch.ones((rows, 1), dtype=torch.long)], dim=1)
                started = time.perf_counter()
                engine.model(
                    input_ids=ids[:, :1],
                    attention_mask=mask,
                    position_ids=torch.full((rows, 1), 40 + i),
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                times.append(time.perf_counter() - started)
        return statistics.median(times)

    one, eight = [], []
    for _ in range(3):  # alternated: a slow spell on a shared machine hits both
        one.append(step_time(1))
        eight.append(step_time(8))
    return 8 * statistics.median(one) / statistics.median(eight)


def _adapters(model_dir: Path, count: int, out: Path) -> list[Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = []
    for i in range(count):
        model = AutoModelForCausalLM.from_pretrained(str(model_dir))
        peft_model = get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
        )
        torch.manual_seed(100 + i)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.01)
        path = out / f"adapter-{i}"
        peft_model.save_pretrained(str(path))
        paths.append(path)
    return paths


def _report(name: str, value: float, goal: str, ok: bool, detail: str) -> bool:
    print(f"{name:<42} {value:5.2f}x  goal {goal:<6} {'PASS' if ok else 'FAIL'}  {detail}", flush=True)
    return ok


def _ratio_line(name: str, goal: str, ok_at: float, better: Load, worse: Load) -> bool:
    ratio = better.rate() / worse.rate()
    detail = (
        f"{better.rate():.1f} vs {worse.rate():.1f} tok/s; per CPU second {better.cpu_rate() / worse.cpu_rate():.2f}x"
    )
    return _report(name, ratio, goal, ratio >= ok_at, detail)


async def main(quick: bool) -> int:
    from ministudio_common import loader
    from ministudio_serve.engines.base import Sampling
    from ministudio_serve.services.adapters import AdapterService

    model_dir = loader.resolve("HuggingFaceTB/SmolLM2-135M-Instruct")
    engine = _engine(model_dir, max_batch_size=8, max_loras=4)
    ceiling = _ceiling(engine)
    print(f"(bare model: a decode step over 8 rows gives {ceiling:.2f}x the tokens/s of a single row here)", flush=True)
    await engine.start()
    n = 8 if quick else 16
    rounds = 1 if quick else 2  # base/mixed alternations in 2.
    prompts = [_prompt(engine.tokenizer, q) for q in itertools.islice(itertools.cycle(QUESTIONS), n)]
    results = []

    # Warm-up: first calls allocate and pick kernels.
    await _closed_loop(engine, [(p, Sampling(max_tokens=4, temperature=0), None) for p in prompts[:8]], 8)

    # 1. Throughput: 8 clients sending requests back to back vs one client, same prompts, same window length.
    greedy = Sampling(max_tokens=48, temperature=0)
    window = 15.0 if quick else 30.0
    alone = await _sustained(engine, prompts, greedy, 1, window)
    together = await _sustained(engine, prompts, greedy, 8, window)
    results.append(_ratio_line("1. 8 concurrent vs one at a time", ">= 4", 4.0, together, alone))

    # 2. Mixed batch over 4 adapters vs the base model, equal work per request.
    with tempfile.TemporaryDirectory() as tmp:
        service = AdapterService(engine, {"HuggingFaceTB/SmolLM2-135M-Instruct", str(model_dir)}, 4, 16)
        handles = [await service.load(f"a{i}", str(p)) for i, p in enumerate(_adapters(model_dir, 4, Path(tmp)))]
        fixed = Sampling(max_tokens=32, temperature=0, ignore_eos=True)
        base_jobs = [(p, fixed, None) for p in prompts]
        mixed_jobs = [(p, fixed, handles[i % 4]) for i, p in enumerate(prompts)]
        warm = Sampling(max_tokens=2, temperature=0)
        for jobs in (base_jobs, mixed_jobs):  # both sides start with their prompt prefixes cached
            await _closed_loop(engine, [(p, warm, a) for p, _, a in jobs], 8)
        base, mixed = Load(), Load()
        for _ in range(rounds):  # alternated, so a slow spell on a shared machine hits both sides
            base += await _closed_loop(engine, base_jobs, 8)
            mixed += await _closed_loop(engine, mixed_jobs, 8)
    results.append(_ratio_line("2. 4-adapter mixed batch vs base model", ">= 0.8", 0.8, mixed, base))

    # 3. TTFT p50: a newcomer arriving at a random moment, idle vs with 7 streams decoding (8 with it).
    # Probes arrive on their own clock (seeded random gaps), not right after a step ends as a closed loop's
    # follow-ups do, so they see the steady state FINDINGS.md describes: part of a decode step, then their prefill.
    probe = Sampling(max_tokens=2, temperature=0)
    gaps = random.Random(7)

    async def probes(count: int) -> list[float]:
        ttfts = []
        for i in range(count):
            await asyncio.sleep(gaps.uniform(0.05, 0.4))
            ttfts.append((await _one(engine, prompts[i % len(prompts)], probe))[1])
        return ttfts

    count = 10 if quick else 16
    idle = await probes(count)
    stop = asyncio.Event()

    async def background(i: int) -> None:
        long = Sampling(max_tokens=40 + 8 * i, temperature=0, ignore_eos=True)
        while not stop.is_set():
            await _one(engine, prompts[i], long)

    streams = [asyncio.create_task(background(i)) for i in range(7)]
    await asyncio.sleep(1.0)  # let the streams fill the batch first
    loaded = await probes(count)
    stop.set()
    await asyncio.gather(*streams)
    busy, calm = statistics.median(loaded), statistics.median(idle)
    results.append(
        _report(
            "3. TTFT p50, 8 streams running vs idle",
            busy / calm,
            "<= 2",
            busy / calm <= 2,
            f"{busy * 1000:.0f} ms vs {calm * 1000:.0f} ms",
        )
    )
    await engine.stop()
    return 0 if all(results) else 1


if __name__ == "__main__":
    import engine_cli  # bench/engine_cli.py: this script's folder is on sys.path

    engine_cli.run(main, __doc__, "fewer requests and rounds")
