"""Test helpers, shipped so other test suites (the control plane's e2e tests) can run the real trainer in seconds:
a tiny tokenizer and a tiny random Llama built on the spot (no download, no GGUF), and chat datasets."""

from __future__ import annotations

import json
import os
import random
import sys
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
