"""Every way FINDINGS.md says a bad adapter slips through peft is refused here with a message that says why, and
the server goes on serving the base model and good adapters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tests.helpers.datasets import edit_json
from tests.helpers.tiny_models import BASE

from ministudio_serve.engines.adapter_files import WEIGHTS_FILE, AdapterError
from ministudio_serve.services.adapters import AdapterService


def _rewrite(path: Path, change: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> None:
    weights = path / WEIGHTS_FILE
    save_file(change(load_file(str(weights))), str(weights))


def _nan(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    key = sorted(tensors)[0]
    tensors[key] = tensors[key].clone()
    tensors[key][0, 0] = float("nan")
    return tensors


BREAKAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing target module": (
        lambda p: edit_json(p / "adapter_config.json", target_modules=["q_proj", "attn_gate_proj"]),
        "target module 'attn_gate_proj' not found in the base model",
    ),
    "other rank in config": (lambda p: edit_json(p / "adapter_config.json", r=4), "size mismatch"),
    "rank above the server's limit": (lambda p: edit_json(p / "adapter_config.json", r=64), "exceeds"),
    "corrupt safetensors": (lambda p: (p / WEIGHTS_FILE).write_bytes(b"\x00garbage" * 10), "corrupt"),
    "missing weights file": (lambda p: (p / WEIGHTS_FILE).unlink(), f"{WEIGHTS_FILE} not found"),
    "missing config": (lambda p: (p / "adapter_config.json").unlink(), "adapter_config.json not found"),
    "renamed weights": (
        lambda p: _rewrite(p, lambda t: {k.replace("q_proj", "qkv_proj"): v for k, v in t.items()}),
        "which the base model does not have",
    ),
    "half the weights missing": (
        lambda p: _rewrite(p, lambda t: {k: v for k, v in t.items() if "layers.1." not in k}),
        "have no lora_A/lora_B weights",
    ),
    "weights for an untargeted module": (
        lambda p: edit_json(p / "adapter_config.json", target_modules=["q_proj", "k_proj", "v_proj"]),
        "target_modules in adapter_config.json excludes",
    ),
    "NaN weights": (lambda p: _rewrite(p, _nan), "NaN"),
    "other base model": (
        lambda p: edit_json(p / "adapter_config.json", base_model_name_or_path="meta-llama/Llama-3.1-8B"),
        "trained on 'meta-llama/Llama-3.1-8B'",
    ),
    "DoRA": (lambda p: edit_json(p / "adapter_config.json", use_dora=True), "use_dora"),
    "config not JSON": (lambda p: (p / "adapter_config.json").write_text("{nope"), "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_bad_adapter_is_refused_with_its_reason(case: str, make_engine, adapter_factory):
    path = adapter_factory("bad")
    breakage, message = BREAKAGES[case]
    breakage(path)
    service = AdapterService(make_engine(), {BASE}, max_loras=4, max_rank=16)
    with pytest.raises(AdapterError, match=message):
        asyncio.run(service.load("bad", str(path)))
    assert service.names() == []  # nothing half-registered (peft keeps a failed name until delete_adapter)


def test_the_saved_adapter_names_the_base_model(adapter_factory):
    config = json.loads((adapter_factory("good") / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == BASE  # so the base-model check above is a real check


def test_reused_name_is_refused_and_the_first_adapter_stays(make_engine, adapter_factory):
    service = AdapterService(make_engine(), {BASE}, max_loras=4, max_rank=16)
    first = asyncio.run(service.load("same", str(adapter_factory("one", seed=1))))
    with pytest.raises(Exception, match="already been loaded"):
        asyncio.run(service.load("same", str(adapter_factory("two", seed=2))))
    assert asyncio.run(service.resolve("same")) is first


def test_server_refuses_bad_adapter_over_http_and_keeps_serving(client, adapter_factory):
    bad = adapter_factory("bad")
    _nan_path = bad / WEIGHTS_FILE
    _rewrite(bad, _nan)
    assert _nan_path.exists()
    refused = client.post("/v1/load_lora_adapter", json={"lora_name": "bad", "lora_path": str(bad)})
    assert refused.status_code == 400
    assert "NaN" in refused.json()["error"]["message"]

    good = client.post("/v1/load_lora_adapter", json={"lora_name": "good", "lora_path": str(adapter_factory("g"))})
    assert good.status_code == 200, good.text
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == [BASE, "good"]
    for model in (BASE, "good"):
        reply = client.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0},
        )
        assert reply.status_code == 200, reply.text
    unknown = client.post("/v1/chat/completions", json={"model": "bad", "messages": [{"role": "user", "content": "x"}]})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    gone = client.post("/v1/unload_lora_adapter", json={"lora_name": "good"})
    assert gone.status_code == 200
    assert client.post("/v1/unload_lora_adapter", json={"lora_name": "good"}).status_code == 404
