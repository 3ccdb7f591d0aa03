"""Checks complete lines in order: a typed msgspec decoder for the common case, explain.py for the rest.

A typed decoder parses and type-checks a line in C in one pass, several times faster than json.loads alone,
so the hot loops below do only what the types cannot say (an assistant reply to train on, character counts).
Every struct forbids unknown fields: then a line the decoder accepts has had every byte either decoded as a
string (which checks UTF-8) or matched as JSON syntax, so no separate UTF-8 pass is needed. Lines with extra
fields are still valid; they just take the slower path. The structs are gc=False (they never form cycles), so
the millions decoded do not keep triggering the cycle collector.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from functions.datasets.explain import Accepted, explain_line
from functions.datasets.report import Format, LineError, human_size

# Stands for a line that was too long to keep; real lines never contain a newline, so it cannot collide.
OVERLONG = b"\n"


class _TextPart(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    type: Literal["text"]
    text: str


_Content = str | list[_TextPart]


class _System(msgspec.Struct, tag_field="role", tag="system", forbid_unknown_fields=True, gc=False):
    content: _Content
    name: str | msgspec.UnsetType = msgspec.UNSET


class _User(msgspec.Struct, tag_field="role", tag="user", forbid_unknown_fields=True, gc=False):
    content: _Content
    name: str | msgspec.UnsetType = msgspec.UNSET


class _Assistant(msgspec.Struct, tag_field="role", tag="assistant", forbid_unknown_fields=True, gc=False):
    content: _Content
    name: str | msgspec.UnsetType = msgspec.UNSET
    weight: Literal[0, 1] = 1


class _Chat(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    messages: list[_System | _User | _Assistant]


class _PromptCompletion(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    prompt: str
    completion: str


def _parts_chars(parts: list[_TextPart]) -> int:
    return sum(len(p.text) for p in parts)


class LineChecker:
    """Counts valid examples and records errors; fed batches of complete lines (without their newline)."""

    def __init__(self, max_errors: int) -> None:
        self.max_errors = max_errors
        self.format: Format | None = None
        self.format_line: int | None = None
        self.examples = 0
        self.messages = 0
        self.chars = 0
        self.lines = 0
        self.error_count = 0
        self.errors: list[LineError] = []
        self.overlong_sizes: dict[int, int] = {}  # line number -> bytes, for OVERLONG lines
        self.max_line_bytes = 0
        self._chat_decode = msgspec.json.Decoder(_Chat).decode
        self._pc_decode = msgspec.json.Decoder(_PromptCompletion).decode

    def error(self, line: int | None, reason: str, field: str | None = None) -> None:
        self.error_count += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(LineError(line, reason, field))

    def feed(self, lines: list[bytes], first_no: int) -> None:
        """Check lines numbered first_no, first_no + 1, ...; empty ones are blank and not counted."""
        self.lines += len(lines) - lines.count(b"")
        start = 0
        # Until a valid line fixes the format there is no single decoder to try; those lines are few.
        while self.format is None and start < len(lines):
            if lines[start]:
                self._slow(lines[start], first_no + start)
            start += 1
        if start < len(lines):
            rest = lines[start:] if start else lines
            if self.format == "chat":
                self._chat(rest, first_no + start)
            else:
                self._prompt_completion(rest, first_no + start)

    def _chat(self, lines: list[bytes], no: int) -> None:
        decode, assistant, parts_chars, slow = self._chat_decode, _Assistant, _parts_chars, self._slow
        examples = messages = chars = 0
        for line in lines:
            if line:
                try:
                    msgs = decode(line).messages
                except ValueError:  # msgspec.DecodeError, or UnicodeDecodeError inside a string
                    slow(line, no)
                else:
                    trainable = False
                    line_chars = 0
                    for m in msgs:
                        content = m.content
                        n = len(content) if content.__class__ is str else parts_chars(content)  # type: ignore[arg-type]
                        line_chars += n
                        if n and m.__class__ is assistant and m.weight:
                            trainable = True
                    if trainable:
                        examples += 1
                        messages += len(msgs)
                        chars += line_chars
                    else:
                        slow(line, no)
            no += 1
        self.examples += examples
        self.messages += messages
        self.chars += chars

    def _prompt_completion(self, lines: list[bytes], no: int) -> None:
        decode, slow = self._pc_decode, self._slow
        examples = chars = 0
        for line in lines:
            if line:
                try:
                    record = decode(line)
                except ValueError:
                    slow(line, no)
                else:
                    if record.completion:
                        examples += 1
                        chars += len(record.prompt) + len(record.completion)
                    else:
                        slow(line, no)
            no += 1
        self.examples += examples
        self.chars += chars

    def _slow(self, line: bytes, no: int) -> None:
        if line == OVERLONG:
            size = self.overlong_sizes.pop(no)
            self.error(
                no,
                f"line {no} is {human_size(size)} long, over the {human_size(self.max_line_bytes)} limit for one "
                "line; shorten or split this example",
            )
            return
        result = explain_line(line, no, self.format, self.format_line)
        if result is None:
            self.lines -= 1  # whitespace only, e.g. the "\r" of a blank CRLF line
        elif isinstance(result, Accepted):
            if self.format is None:
                self.format, self.format_line = result.format, no
            self.examples += 1
            self.messages += result.messages
            self.chars += result.chars
        else:
            self.error(no, result.reason, result.field)
