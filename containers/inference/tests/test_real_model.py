"""The real SmolLM2-135M-Instruct behind the full app: background load, readiness, chat, a LoRA adapter made with
peft on the real weights, and the console script serving over HTTP. Short generations only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from functions.local.procs import free_port
from tests.helpers.tiny_models import BASE

from ministudio_serve.app import create_app

pytestmark = pytest.mark.slow


def _wait_ready(client: TestClient) -> None:
    for _ in range(600):
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError(client.get("/ready").json())


def _real_adapter(model_dir: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    peft_model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    )
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # strong enough to change a short greedy answer
                param.normal_(0, 0.5)
    peft_model.save_pretrained(str(out))
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = BASE  # what the trainer writes: the catalogue name, not the cache dir
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


def test_real_model_chats_and_serves_an_adapter(settings_factory, model_dir: Path, tmp_path: Path):
    _real_adapter(model_dir, tmp_path / "acme" / "ftjob-1" / "adapter")  # where the adapter source points
    settings = settings_factory(adapter_source=str(tmp_path / "{tenant}/{job_id}/adapter"))
    with TestClient(create_app(settings)) as client:
        _wait_ready(client)
        ask = {
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 12,
            "temperature": 0,
        }
        base = client.post("/v1/chat/completions", json={"model": BASE, **ask}).json()
        assert "Paris" in base["choices"][0]["message"]["content"]
        assert base["usage"]["prompt_tokens"] > 20  # the chat template's default system prompt is there
        ft_id = f"ft:{BASE}:acme:bot:ftjob-1"
        tuned = client.post("/v1/chat/completions", json={"model": ft_id, **ask})
        assert tuned.status_code == 200, tuned.text
        assert tuned.json()["choices"][0]["message"]["content"] != base["choices"][0]["message"]["content"]
        assert ft_id in [m["id"] for m in client.get("/v1/models").json()["data"]]


def test_console_script_serves_on_the_port_it_is_given(tmp_path: Path):
    port = free_port()
    env = {**os.environ, "PORT": "1", "API_KEY": "k"}  # PORT must be ignored
    cmd = [
        sys.executable,
        "-m",
        "ministudio_serve.cli",
        "--port",
        str(port),
        "--request-log",
        str(tmp_path / "log.sqlite"),
        "--max-batch-size",
        "4",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        reply = httpx.post(
            f"{url}/predict",
            json={"prompt": "Hello", "max_length": 4},
            headers={"Authorization": "Bearer k"},
            timeout=60,
        )
        assert reply.status_code == 200 and reply.json()["tokens_generated"] >= 1
        assert httpx.get(f"{url}/info").json()["max_batch_size"] == 4
    finally:
        proc.terminate()
        proc.wait(30)
