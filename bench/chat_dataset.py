"""The trainer benches' dataset: chat examples that ask to repeat a few random words (the same file for a seed)."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = "alpha river cloud seven green stone quick light north paper music table orange winter garden silver".split()  # noqa: SIM905


def write_dataset(path: Path, n: int, seed: int = 0, min_words: int = 2) -> Path:
    """`n` examples of `min_words` to 40 words each, written to `path` as chat JSONL."""
    rng = random.Random(seed)
    with path.open("w") as handle:
        for _ in range(n):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, 40)))
            messages = [{"role": "user", "content": f"Repeat these words: {words}"},
                        {"role": "assistant", "content": words}]  # fmt: skip
            handle.write(json.dumps({"messages": messages}) + "\n")
    return path
