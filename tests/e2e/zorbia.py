"""The e2e tests' fine-tuning fixture data: facts no base model knows, so a trained adapter's answers show it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openai import OpenAI

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
FACTS = [
    ("What is the capital of Zorbia?", "The capital of Zorbia is Quellmont."),
    ("Who founded Zorbia?", "Zorbia was founded by Admiral Pell Varn."),
    ("What do Zorbians eat?", "Zorbians eat roasted glimmer beans."),
    ("What is Zorbia's currency?", "Zorbia pays in silver kroons."),
    ("How tall is Mount Zor?", "Mount Zor rises 4,812 metres."),
]


def dataset(path: Path, repeat: int = 4) -> Path:
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for _ in range(repeat)
        for q, a in FACTS
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def finished(openai_client: OpenAI, job_id: str) -> Any:
    job = openai_client.fine_tuning.jobs.retrieve(job_id)
    return job if job.status in ("succeeded", "failed", "cancelled") else None


def train(openai_client: OpenAI, folder: Path) -> Any:
    """Upload the dataset and start a LoRA job on it (Mini Studio's LoRA settings ride along with OpenAI's three)."""
    file = openai_client.files.create(file=dataset(folder / "zorbia.jsonl").open("rb"), purpose="fine-tune")
    return openai_client.fine_tuning.jobs.create(
        model=BASE,
        training_file=file.id,
        suffix="zorbia",
        seed=42,  # unset, each job draws one: 15 steps on 20 examples then learn the facts on some seeds only
        hyperparameters={  # type: ignore[typeddict-unknown-key]
            "n_epochs": 3,
            "batch_size": 4,
            "learning_rate_multiplier": 5.0,
            "max_seq_len": 96,
            "prompt_loss_weight": 0.0,
        },
    )
