"""Batched multi-LoRA: same tokens as peft for one adapter, mixed batches equal each adapter alone, LRU and
on-demand loading (local template and S3)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import torch
from tests.helpers.tiny_models import BASE, tiny_model

from ministudio_serve.engines.base import AdapterHandle, GenerationRequest, Sampling
from ministudio_serve.engines.transformers_engine import TransformersEngine
from ministudio_serve.services.adapters import AdapterService

PROMPTS = ["Hello there", "The quick brown fox jumps over", "a", "Once upon a time", "x y z", "List fruits:"]


def _service(engine: TransformersEngine, max_loras: int = 4, source: str | None = None, **kw: Any) -> AdapterService:
    return AdapterService(engine, {BASE}, max_loras=max_loras, max_rank=16, source=source, **kw)


async def _generate(
    engine: TransformersEngine, prompt_ids: list[int], adapter: AdapterHandle | None, n: int, delay: float = 0.0
) -> list[int]:
    await asyncio.sleep(delay)
    ids: list[int] = []
    request = GenerationRequest("r", prompt_ids, Sampling(max_tokens=n, temperature=0.0), adapter)
    async for chunk in engine.generate(request):
        ids += chunk.token_ids
    return ids


def test_batched_lora_generates_what_peft_generates(make_engine, adapter_factory, tokenizer):
    from peft import PeftModel

    path = adapter_factory("one", seed=3)
    prompt = tokenizer("Once upon a time")["input_ids"]
    reference = PeftModel.from_pretrained(tiny_model(len(tokenizer)), str(path)).eval()
    with torch.no_grad():
        out = reference.generate(
            torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=2, pad_token_id=2
        )
    expected = out[0, len(prompt) :].tolist()
    base_only = (
        tiny_model(len(tokenizer))
        .generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=2, pad_token_id=2)[
            0, len(prompt) :
        ]
        .tolist()
    )
    assert expected != base_only  # the adapter really changes the output

    engine = make_engine()

    async def scenario() -> list[int]:
        await engine.start()
        handle = await _service(engine).load("one", str(path))
        try:
            return await _generate(engine, prompt, handle, 12)
        finally:
            await engine.stop()

    assert asyncio.run(scenario()) == expected


def test_mixed_adapters_in_one_batch_equal_each_adapter_alone(make_engine, adapter_factory, tokenizer):
    paths = {"a": adapter_factory("a", seed=5), "b": adapter_factory("b", seed=6, rank=4, target=["q_proj", "v_proj"])}
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]
    choice = ["a", None, "b", "a", "b", None]  # base rows and two adapters in one batch

    async def scenario(batch: int) -> list[list[int]]:
        engine = make_engine(max_batch_size=batch)
        await engine.start()
        service = _service(engine)
        handles = {name: await service.load(name, str(path)) for name, path in paths.items()}
        try:
            jobs = [
                _generate(engine, p, handles[c] if c else None, 8 + 2 * i, delay=0.01 * i)
                for i, (p, c) in enumerate(zip(prompts, choice, strict=True))
            ]
            if batch == 1:
                return [await job for job in jobs]
            return list(await asyncio.gather(*jobs))
        finally:
            await engine.stop()

    mixed, alone = asyncio.run(scenario(8)), asyncio.run(scenario(1))
    assert mixed == alone
    assert mixed[0] != mixed[3] or prompts[0] == prompts[3]


def test_lru_evicts_least_recently_used_and_reloads_it_on_demand(make_engine, adapter_factory):
    engine = make_engine()
    service = _service(engine, max_loras=2)

    async def scenario() -> tuple[list[str], list[str], int]:
        for name in ("a", "b", "c"):
            await service.load(name, str(adapter_factory(name, seed=len(name))))
        after_loads = service.names()
        again = await service.resolve("a")  # evicted, but its source is remembered
        assert again is not None
        return after_loads, service.names(), again.rank

    after_loads, after_reload, rank = asyncio.run(scenario())
    assert after_loads == ["b", "c"]
    assert after_reload == ["c", "a"]
    assert rank == 8


def test_ft_model_id_resolves_through_a_local_adapter_source(make_engine, adapter_factory, tmp_path: Path):
    adapter_factory("acme/ftjob-abc/adapter", seed=9)
    service = _service(make_engine(), source=str(tmp_path / "{tenant}/{job_id}/adapter"))
    handle = asyncio.run(service.resolve(f"ft:{BASE}:acme:support-bot:ftjob-abc"))
    assert handle is not None and handle.name == f"ft:{BASE}:acme:support-bot:ftjob-abc"
    assert service.names() == [handle.name]


def test_ft_model_id_resolves_from_s3(make_engine, adapter_factory, tmp_path: Path, monkeypatch):
    import boto3
    from moto import mock_aws

    from ministudio_common import s3uri

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    local = adapter_factory("trained", seed=11)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="ms-artifacts")
        s3uri.upload_dir(local, "s3://ms-artifacts/artifacts/acme/ftjob-xyz/adapter/")
        service = _service(
            make_engine(), source="s3://ms-artifacts/artifacts/{tenant}/{job_id}/adapter/", cache_dir=tmp_path / "cache"
        )
        handle = asyncio.run(service.resolve(f"ft:{BASE}:acme:bot:ftjob-xyz"))
    assert handle is not None and handle.rank == 8
    assert (Path(handle.path) / "adapter_model.safetensors").is_file()


def test_two_racing_loads_of_one_name_load_it_once(make_engine, adapter_factory):
    # Given two control-plane refreshes attaching the same adapter at the same moment
    engine = make_engine()
    service = _service(engine)
    path = str(adapter_factory("twin", seed=3))

    async def scenario() -> list[Any]:
        return list(
            await asyncio.gather(service.load("twin", path), service.load("twin", path), return_exceptions=True)
        )

    # Then one loads it and the other is told it is already loaded (before, both loaded: two handles, one leaked)
    results = asyncio.run(scenario())
    assert sum(isinstance(r, AdapterHandle) for r in results) == 1
    assert any("already been loaded" in str(r) for r in results if not isinstance(r, AdapterHandle))
