"""Reading training data: a local file, a directory of .jsonl (a SageMaker channel) or an s3:// object.

Each line is `{"messages": [...]}` (OpenAI chat format, optional `weight` 0/1 on assistant turns) or
`{"prompt", "completion"}`. The first bad line stops the job with its line number, so the user can fix it.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ministudio_common import s3uri

from ministudio_train.errors import TrainError

ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True)
class Example:
    """One training example, normalised: chat messages, or raw prompt/completion text."""

    messages: tuple[dict[str, Any], ...] | None = None
    prompt: str | None = None
    completion: str | None = None
    line: int = 0


class _Source:
    def __init__(self, param: str) -> None:
        self.param = param
        self.code = f"invalid_{param}"

    def error(self, message: str) -> TrainError:
        return TrainError(self.code, message, self.param)


def _files(ref: str, source: _Source, workdir: Path) -> list[Path]:
    if s3uri.is_s3(ref):
        target = workdir / Path(s3uri.split(ref)[1] or "data").name
        try:
            s3uri.download(ref, target)
        except Exception as exc:  # NoSuchKey, AccessDenied, no bucket: all mean the user must fix the URI
            raise source.error(f"cannot download {ref}: {exc}") from exc
        ref = str(target)
    path = Path(ref)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json") and p.is_file())
        if not files:
            raise source.error(f"{ref} holds no .jsonl file")
        return files
    if not path.is_file():
        raise source.error(f"{ref} does not exist")
    return [path]


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        texts = [p for p in parts if isinstance(p, str)]
        if texts and len(texts) == len(parts):
            return "".join(texts)
    return None


def parse_line(raw: str, where: str, source: _Source, line: int) -> Example:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise source.error(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise source.error(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        return Example(messages=_messages(obj["messages"], where, source), line=line)
    if "prompt" in obj and "completion" in obj:
        if not isinstance(obj["prompt"], str) or not isinstance(obj["completion"], str) or not obj["completion"]:
            raise source.error(f"{where}: prompt and completion must be strings, completion non-empty")
        return Example(prompt=obj["prompt"], completion=obj["completion"], line=line)
    raise source.error(f'{where}: expected a "messages" list or "prompt" and "completion" strings')


def _messages(messages: Any, where: str, source: _Source) -> tuple[dict[str, Any], ...]:
    if not isinstance(messages, list) or not messages:
        raise source.error(f'{where}: "messages" must be a non-empty list')
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise source.error(f"{where}: message {i} needs a role among {', '.join(ROLES)}")
        text = _text(message.get("content"))
        if text is None:
            raise source.error(f"{where}: message {i} ({message['role']}) has no text content")
        weight = message.get("weight", 1)
        if message["role"] == "assistant" and weight not in (0, 1):
            raise source.error(f"{where}: message {i} has weight {weight!r}; weight must be 0 or 1")
        out.append({"role": message["role"], "content": text, "weight": weight})
    if not any(m["role"] == "assistant" for m in out):
        raise source.error(f"{where}: no assistant message to learn from")
    return tuple(out)


def read_examples(ref: str, param: str = "training_file", workdir: Path | None = None) -> list[Example]:
    """Parse every example under ref, failing on the first bad line with its file and line number."""
    source = _Source(param)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        examples = list(_iter_examples(_files(ref, source, Path(tmp)), source))
    if not examples:
        raise source.error(f"{ref} holds no examples")
    return examples


def _iter_examples(files: list[Path], source: _Source) -> Iterator[Example]:
    for path in files:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                where = f"line {number} of {path.name}"
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise source.error(f"{where}: not UTF-8") from None
                if text.strip():
                    yield parse_line(text, where, source, number)


def split_validation(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out a seeded random fraction for eval loss (at least one example, never all of them)."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)  # noqa: S311 - reproducible split, not secrecy
    held = min(len(examples) - 1, max(1, round(fraction * len(examples))))
    chosen = set(order[:held])
    return [e for i, e in enumerate(examples) if i not in chosen], [examples[i] for i in sorted(chosen)]
