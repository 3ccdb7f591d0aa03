"""The continuous batcher: same greedy text as one request at a time, rows that join and leave mid-flight,
stop sequences, max_tokens, seeds and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from ministudio_serve.engines.base import ContextLengthExceeded, GenerationRequest, Sampling
from ministudio_serve.engines.transformers_engine import TransformersEngine

PROMPTS = [
    "Hello there",
    "The quick brown fox jumps over the lazy dog and then keeps running far away",
    "a",
    "Once upon a time in a land far away there lived a",
    "x y z",
    "List three fruits:",
]


async def _collect(engine: TransformersEngine, request: GenerationRequest, delay: float = 0.0) -> dict[str, Any]:
    await asyncio.sleep(delay)
    text, ids, last = "", [], None
    async for chunk in engine.generate(request):
        text += chunk.text
        ids += chunk.token_ids
        last = chunk
    assert last is not None
    return {"text": text, "ids": ids, "finish": last.finish_reason, "completion": last.completion_tokens}


def _requests(tokenizer: Any, **sampling: Any) -> list[GenerationRequest]:
    return [
        GenerationRequest(f"r{i}", tokenizer(p)["input_ids"], Sampling(max_tokens=4 + 5 * i, **sampling))
        for i, p in enumerate(PROMPTS)
    ]


async def _batched(engine: TransformersEngine, requests: list[GenerationRequest]) -> list[dict[str, Any]]:
    await engine.start()
    try:
        # Staggered arrivals: later requests join a batch that is already decoding.
        return await asyncio.gather(*(_collect(engine, r, delay=0.02 * i) for i, r in enumerate(requests)))
    finally:
        await engine.stop()


async def _one_by_one(engine: TransformersEngine, requests: list[GenerationRequest]) -> list[dict[str, Any]]:
    await engine.start()
    try:
        return [await _collect(engine, r) for r in requests]
    finally:
        await engine.stop()


def test_continuous_batching_matches_one_at_a_time_greedy(make_engine: Callable[..., TransformersEngine], tokenizer):
    requests = _requests(tokenizer, temperature=0.0)
    batched = asyncio.run(_batched(make_engine(max_batch_size=8), requests))
    alone = asyncio.run(_one_by_one(make_engine(max_batch_size=1), requests))
    assert [b["ids"] for b in batched] == [a["ids"] for a in alone]
    assert [b["completion"] for b in batched] == [len(a["ids"]) for a in alone]


def test_batch_smaller_than_load_queues_and_still_matches(make_engine, tokenizer):
    # Given 6 requests and room for 2 rows, waiting requests must take the places of finished ones.
    requests = _requests(tokenizer, temperature=0.0)
    batched = asyncio.run(_batched(make_engine(max_batch_size=2), requests))
    alone = asyncio.run(_one_by_one(make_engine(max_batch_size=1), requests))
    assert [b["ids"] for b in batched] == [a["ids"] for a in alone]


def test_short_request_arriving_later_finishes_while_long_one_runs(make_engine, tokenizer):
    engine = make_engine(max_batch_size=4)
    order: list[str] = []

    async def scenario() -> None:
        await engine.start()
        long = GenerationRequest("long", tokenizer("a")["input_ids"], Sampling(max_tokens=120, temperature=0.0))
        short = GenerationRequest("short", tokenizer("b")["input_ids"], Sampling(max_tokens=3, temperature=0.0))

        async def track(request: GenerationRequest, delay: float) -> None:
            await _collect(engine, request, delay)
            order.append(request.request_id)

        await asyncio.gather(track(long, 0.0), track(short, 0.05))
        await engine.stop()

    asyncio.run(scenario())
    assert order == ["short", "long"]


def test_max_tokens_ends_with_length_and_counts_tokens(make_engine, tokenizer):
    request = GenerationRequest("r", tokenizer("Hi")["input_ids"], Sampling(max_tokens=5, temperature=0.0))
    (out,) = asyncio.run(_batched(make_engine(), [request]))
    if out["finish"] == "length":
        assert out["completion"] == 5
    else:  # the random model may emit EOS early
        assert out["finish"] == "stop" and out["completion"] < 5


def test_stop_sequence_cuts_text_before_it(make_engine, tokenizer):
    free = asyncio.run(
        _batched(
            make_engine(),
            [GenerationRequest("r", tokenizer("Tell me")["input_ids"], Sampling(max_tokens=30, temperature=0.0))],
        )
    )[0]
    assert len(free["text"]) > 6
    stop = free["text"][3:6]
    cut = asyncio.run(
        _batched(
            make_engine(),
            [
                GenerationRequest(
                    "r", tokenizer("Tell me")["input_ids"], Sampling(max_tokens=30, temperature=0.0, stop=(stop,))
                )
            ],
        )
    )[0]
    assert cut["finish"] == "stop"
    assert cut["text"] == free["text"][: free["text"].find(stop)]
    assert stop not in cut["text"]


def test_seeded_sampling_is_reproducible_and_seed_dependent(make_engine, tokenizer):
    # Batched logits differ from lone ones in the last bits, which can move a sampled token: like vLLM, the
    # promise is reproducibility for the same seed under the same load, and greedy equality across loads.
    requests = _requests(tokenizer, temperature=1.0, top_p=0.9, seed=1234)
    first = asyncio.run(_one_by_one(make_engine(max_batch_size=1), requests))
    second = asyncio.run(_one_by_one(make_engine(max_batch_size=1), requests))
    assert [a["ids"] for a in first] == [b["ids"] for b in second]
    other_seed = _requests(tokenizer, temperature=1.0, top_p=0.9, seed=99)
    third = asyncio.run(_one_by_one(make_engine(max_batch_size=1), other_seed))
    assert [a["ids"] for a in first] != [c["ids"] for c in third]


def test_tiny_top_p_keeps_only_the_most_likely_token(make_engine, tokenizer):
    greedy = asyncio.run(_batched(make_engine(), _requests(tokenizer, temperature=0.0)))
    nucleus_of_one = asyncio.run(_batched(make_engine(), _requests(tokenizer, temperature=1.5, top_p=1e-6, seed=5)))
    assert [g["ids"] for g in greedy] == [n["ids"] for n in nucleus_of_one]


def test_prompt_beyond_context_is_refused(make_engine, tokenizer):
    engine = make_engine()
    request = GenerationRequest("r", [5] * 250, Sampling(max_tokens=10))

    async def scenario() -> None:
        await engine.start()
        try:
            with pytest.raises(ContextLengthExceeded, match="maximum context length is 256"):
                await _collect(engine, request)
        finally:
            await engine.stop()

    asyncio.run(scenario())


def test_cancelled_request_leaves_the_batch(make_engine, tokenizer):
    engine = make_engine()

    async def scenario() -> tuple[int, int]:
        await engine.start()
        request = GenerationRequest("r", tokenizer("a")["input_ids"], Sampling(max_tokens=200, temperature=0.0))
        stream = engine.generate(request)
        await stream.__anext__()
        running_before = engine.stats().running
        await stream.aclose()  # the client went away
        for _ in range(200):
            if engine.stats().running == 0:
                break
            await asyncio.sleep(0.01)
        running_after = engine.stats().running
        await engine.stop()
        return running_before, running_after

    assert asyncio.run(scenario()) == (1, 0)


def test_sampling_draws_only_from_the_nucleus():
    import torch

    from ministudio_serve.engines.sampling import choose

    # Three tokens hold 0.5, 0.3, 0.2 of the mass and the rest next to nothing: top_p=0.75 keeps the first two.
    logits = torch.full((1, 1000), -30.0)
    logits[0, 7], logits[0, 3], logits[0, 9] = torch.tensor([0.5, 0.3, 0.2]).log()
    generator = torch.Generator().manual_seed(0)
    seen = {choose(logits, [Sampling(max_tokens=1, top_p=0.75)], [generator])[0] for _ in range(200)}
    assert seen == {7, 3}
    generator = torch.Generator().manual_seed(0)
    everything = {choose(logits, [Sampling(max_tokens=1, top_p=1.0)], [generator])[0] for _ in range(300)}
    assert everything == {7, 3, 9}


def test_prompts_sharing_a_prefix_reuse_its_cache_and_answer_the_same(make_engine, tokenizer):
    system = "You are a careful assistant who answers in one short sentence and never rambles on. " * 2
    prompts = [tokenizer(system + q)["input_ids"] for q in ("What is red?", "Name a fish.", "Count to three.")]
    requests = [GenerationRequest(f"r{i}", p, Sampling(max_tokens=10, temperature=0.0)) for i, p in enumerate(prompts)]
    cached_engine = make_engine(max_batch_size=1)
    cached = asyncio.run(_one_by_one(cached_engine, requests))
    plain = asyncio.run(_one_by_one(make_engine(max_batch_size=1, prefix_cache_tokens=0), requests))
    assert [c["ids"] for c in cached] == [p["ids"] for p in plain]
    assert cached_engine._prefix.hits == 2 and cached_engine._prefix.hit_tokens >= 32
    # Batched newcomers with and without a cached prefix in one prefill also match.
    mixed = asyncio.run(_batched(make_engine(max_batch_size=8), requests + _requests(tokenizer, temperature=0.0)))
    alone = asyncio.run(
        _one_by_one(
            make_engine(max_batch_size=1, prefix_cache_tokens=0), requests + _requests(tokenizer, temperature=0.0)
        )
    )
    assert [m["ids"] for m in mixed] == [a["ids"] for a in alone]
