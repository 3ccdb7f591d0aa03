"""Small datasets for tests, and the JSON files around them."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

# Also the tiny tokenizer's corpus (tests.helpers.tiny_models): chat_rows' words are whole tokens to it.
WORDS = ["red", "green", "blue", "cyan", "black", "white", "one", "two", "three", "four", "five", "six", "seven"]


def chat_lines(n: int = 12, offset: int = 0) -> bytes:
    rows = []
    for i in range(offset, offset + n):
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "You are a calculator."},
                    {"role": "user", "content": f"What is {i} + {i}?"},
                    {"role": "assistant", "content": str(2 * i)},
                ]
            }
        )
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def prompt_completion_lines(n: int = 12) -> bytes:
    return "".join(
        json.dumps({"prompt": f"{i} squared is", "completion": f" {i * i}"}) + "\n" for i in range(n)
    ).encode()


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
    """One line per row: strings as they are (to write broken lines on purpose), anything else as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
