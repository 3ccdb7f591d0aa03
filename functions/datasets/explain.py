"""The precise path: decide one line's fate in plain Python and, when it is wrong, say why in words.

The fast path (schema.py) only accepts lines of the exact expected shape; everything else lands here, so
this module is the definition of what a valid line is, and the tests hold the fast path to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec

from functions.datasets.report import Format

ROLES = ("system", "user", "assistant")
_ROLE_LIST = "system, user, assistant"
_FORMAT_NAMES: dict[Format, str] = {"chat": "chat", "prompt_completion": "prompt/completion"}
_CHAT_EXAMPLE = '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'
_PARTS_HINT = 'a string or a list of {"type": "text", "text": "..."} parts'


@dataclass(frozen=True, slots=True)
class Accepted:
    format: Format
    messages: int
    chars: int


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    field: str | None = None


def explain_line(
    line: bytes, no: int, file_format: Format | None, format_line: int | None
) -> Accepted | Rejected | None:
    """Accepted with its counts, Rejected with a reason, or None for a blank line."""
    if not line.strip():
        return None
    if b"\x00" in line:
        return Rejected(
            f"line {no} contains NUL bytes, so it is binary data rather than text; "
            "upload a UTF-8 text file with one JSON object per line"
        )
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return Rejected(
            f"line {no} is not valid UTF-8 (byte 0x{line[e.start]:02x} at byte {e.start + 1} of the line); "
            "re-save the file with UTF-8 encoding"
        )
    try:
        obj = msgspec.json.decode(line)
    except RecursionError:
        return Rejected(f"line {no} nests JSON arrays or objects too deeply to read; flatten the record")
    except msgspec.DecodeError as e:
        return Rejected(_json_problem(text, no, e))
    if not isinstance(obj, dict):
        return Rejected(
            f"line {no} holds {_kind(obj)} where a JSON object is expected; "
            f"each line must be one object such as {_CHAT_EXAMPLE}"
        )
    return _check_record(obj, no, file_format, format_line)


def _json_problem(text: str, no: int, fast_error: msgspec.DecodeError) -> str:
    stripped = text.strip()
    if text.startswith("\ufeff"):
        return (
            f"line {no} starts with a UTF-8 byte-order mark, which only the file's first line may have "
            "(were files concatenated?); remove it"
        )
    if stripped in ("{", "["):
        return (
            f"line {no} holds only '{stripped}': the file looks like pretty-printed JSON; "
            "JSON Lines needs each example as one JSON object on a single line"
        )
    try:
        json.loads(text)
    except RecursionError:
        return f"line {no} nests JSON arrays or objects too deeply to read; flatten the record"
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string"):
            return (
                f"line {no} ends before its JSON is complete (cut off after {len(stripped)} characters?); "
                "each line must hold one whole JSON object"
            )
        if e.msg == "Extra data":
            return (
                f"line {no} has more than one JSON value (extra text from column {e.colno}); "
                "put each JSON object on its own line"
            )
        return f"line {no} is not valid JSON: {e.msg} at column {e.colno}"
    # Python's json module is laxer (NaN, Infinity, lone surrogates) than the decoder the trainer uses.
    return f"line {no} is not valid JSON: {fast_error}"


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return f"the boolean {json.dumps(value)}"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def _shown(value: Any, limit: int = 40) -> str:
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _check_record(
    obj: dict[str, Any], no: int, file_format: Format | None, format_line: int | None
) -> Accepted | Rejected:
    is_chat = "messages" in obj
    is_pc = "prompt" in obj or "completion" in obj
    if is_chat and is_pc:
        return Rejected(
            f'line {no} has both "messages" and "prompt"/"completion"; use either the chat format or the '
            "prompt/completion format, one per file"
        )
    if not is_chat and not is_pc:
        keys = ", ".join(_shown(k, 30) for k in list(obj)[:8]) or "none"
        return Rejected(
            f'line {no} has neither "messages" (chat format) nor "prompt" and "completion"; found keys: {keys}. '
            f"Expected e.g. {_CHAT_EXAMPLE}"
        )
    fmt: Format = "chat" if is_chat else "prompt_completion"
    if file_format is not None and fmt != file_format:
        return Rejected(
            f"line {no} is {_FORMAT_NAMES[fmt]} but the file is {_FORMAT_NAMES[file_format]} format "
            f"(set by line {format_line}); use one format for every line"
        )
    return _check_chat(obj["messages"], no) if is_chat else _check_prompt_completion(obj, no)


def _check_prompt_completion(obj: dict[str, Any], no: int) -> Accepted | Rejected:
    for key in ("prompt", "completion"):
        if key not in obj:
            return Rejected(f'line {no} has no "{key}"; prompt/completion examples need both as strings', key)
        if not isinstance(obj[key], str):
            return Rejected(f'line {no}: "{key}" is {_kind(obj[key])}; expected a string', key)
    if not obj["completion"]:
        return Rejected(
            f'line {no}: "completion" is empty; give the text the model should learn to write', "completion"
        )
    return Accepted("prompt_completion", 0, len(obj["prompt"]) + len(obj["completion"]))


def _check_chat(messages: Any, no: int) -> Accepted | Rejected:
    if not isinstance(messages, list):
        return Rejected(
            f'line {no}: "messages" is {_kind(messages)}; expected a list of {{"role", "content"}} objects',
            "messages",
        )
    if not messages:
        return Rejected(f'line {no}: "messages" is empty; add at least a user and an assistant message', "messages")
    chars = 0
    trainable = False
    has_assistant = False
    for i, message in enumerate(messages):
        checked = _check_message(message, no, i)
        if isinstance(checked, Rejected):
            return checked
        role, n_chars, weight = checked
        chars += n_chars
        if role == "assistant":
            has_assistant = True
            trainable = trainable or (n_chars > 0 and weight == 1)
    if not has_assistant:
        return Rejected(
            f"line {no} has no assistant message; each example needs at least one assistant reply to learn from",
            "messages",
        )
    if not trainable:
        return Rejected(
            f"line {no}: no assistant message has both non-empty content and weight 1; "
            "at least one reply must be there to train on",
            "messages",
        )
    return Accepted("chat", len(messages), chars)


def _check_message(message: Any, no: int, i: int) -> tuple[str, int, int] | Rejected:
    """(role, content characters, weight) of a well-formed message."""
    where, path = f"message {i + 1}", f"messages[{i}]"
    if not isinstance(message, dict):
        return Rejected(f'line {no}: {where} is {_kind(message)}; expected an object with "role" and "content"', path)
    if "role" not in message:
        return Rejected(f'line {no}: {where} has no "role"; use one of {_ROLE_LIST}', f"{path}.role")
    role = message["role"]
    if role not in ROLES:
        return Rejected(f"line {no}: {where} has role {_shown(role)}; use one of {_ROLE_LIST}", f"{path}.role")
    where = f"{where} ({role})"
    if "content" not in message:
        return Rejected(f'line {no}: {where} has no "content"; expected {_PARTS_HINT}', f"{path}.content")
    n_chars = _content_chars(message["content"], no, where, f"{path}.content")
    if isinstance(n_chars, Rejected):
        return n_chars
    if "name" in message and not isinstance(message["name"], str):
        found = _kind(message["name"])
        return Rejected(f'line {no}: {where} has a "name" that is {found}; expected a string', f"{path}.name")
    weight = 1
    if "weight" in message:
        weight = message["weight"]
        if role != "assistant":
            return Rejected(f'line {no}: {where} has a "weight"; only assistant messages take one', f"{path}.weight")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight not in (0, 1):
            return Rejected(
                f"line {no}: {where} has weight {_shown(weight)}; use 0 (do not train on it) or 1 (train on it)",
                f"{path}.weight",
            )
    return role, n_chars, weight


def _content_chars(content: Any, no: int, where: str, path: str) -> int | Rejected:
    if isinstance(content, str):
        return len(content)
    if not isinstance(content, list):
        return Rejected(f"line {no}: {where} has content {_kind(content)}; expected {_PARTS_HINT}", path)
    chars = 0
    for j, part in enumerate(content):
        part_path = f"{path}[{j}]"
        if not isinstance(part, dict):
            return Rejected(
                f"line {no}: {where} content part {j + 1} is {_kind(part)}; expected {_PARTS_HINT}", part_path
            )
        if part.get("type") != "text":
            found = _shown(part["type"]) if "type" in part else "no type"
            return Rejected(
                f"line {no}: {where} content part {j + 1} has {found}; only text parts "
                '({"type": "text", "text": "..."}) are supported',
                f"{part_path}.type",
            )
        text = part.get("text")
        if not isinstance(text, str):
            found = _kind(text) if "text" in part else "missing"
            return Rejected(
                f'line {no}: {where} content part {j + 1} has "text" {found}; expected a string', f"{part_path}.text"
            )
        chars += len(text)
    return chars
