"""Test helpers, shipped so other test suites (the control plane's e2e tests) can run the real trainer in seconds:
a tiny tokenizer and a tiny random Llama built on the spot (no download, no GGUF), and chat datasets."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
WORDS = ["red", "green", "blue", "cyan", "black", "white", "one", "two", "three", "four", "five", "six", "seven"]


def build_tokenizer(dest: Path) -> Any:
    """A byte-level BPE of a few hundred tokens with ChatML specials, like SmolLM2's but small."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [" ".join(WORDS), "repeat after me: user assistant system", *(f"say {w} {w}" for w in WORDS)]
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus * 5, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    fast.save_pretrained(str(dest))
    return fast


def build_model_dir(dest: Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(dest)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(str(dest), safe_serialization=True)
    return dest


def chat_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """A learnable task: the assistant repeats the user's colour words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        rows.append(
            {"messages": [{"role": "user", "content": f"say {words}"}, {"role": "assistant", "content": words}]}
        )
    return rows


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for a trainer subprocess: offline, quiet, without an ambient SageMaker or spec."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "MINISTUDIO_JOB_SPEC"))}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
            "MINISTUDIO_SAGEMAKER_ROOT": "/nonexistent-sagemaker-root",
            **extra,
        }
    )
    return env


def trainer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ministudio_train.cli", *args]


# MLflow reports usage to its own servers unless told not to; tests reach nothing but 127.0.0.1.
MLFLOW_QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def mlflow_server(root: Path, timeout: float = 240.0) -> Iterator[str]:
    """A real `mlflow server` on a free 127.0.0.1 port: SQLite backend store, artifacts proxied (--serve-artifacts)
    into root/artifacts. Yields its tracking URI; stops the server on exit."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--serve-artifacts",
           "--artifacts-destination", str(root / "artifacts")]  # fmt: skip
    env = {**os.environ, **MLFLOW_QUIET_ENV}
    with (root / "server.log").open("w") as logfile:
        # Its own process group: the server may start workers, and stopping it must stop them too.
        proc = subprocess.Popen(
            cmd, stdout=logfile, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited {proc.returncode}: {(root / 'server.log').read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow server did not answer within {timeout} s")
            time.sleep(0.5)
        yield uri
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
