"""Small datasets for tests."""

from __future__ import annotations

import json


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
