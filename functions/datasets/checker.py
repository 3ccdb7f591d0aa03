"""Checks complete lines in order, in three tiers, each taking only what the one before could not decide.

1. The strict typed decoder (schema.py): parses and type-checks in C, several times faster than json.loads
   alone; the hot loops do only what types cannot say (an assistant reply to train on, character counts).
2. The lenient typed decoder plus a UTF-8 check, for valid lines that carry extra fields.
3. explain.py, which decides everything else and says what is wrong.
"""

from __future__ import annotations

import msgspec

from functions.datasets import schema
from functions.datasets.explain import Accepted, explain_line
from functions.datasets.report import Format, LineError, human_size

# Stands for a line that was too long to keep; real lines never contain a newline, so it cannot collide.
OVERLONG = b"\n"


class LineChecker:
    """Counts valid examples and records errors; fed batches of complete lines (without their newline)."""

    def __init__(self, max_errors: int, max_line_bytes: int) -> None:
        self.max_errors = max_errors
        self.max_line_bytes = max_line_bytes  # only to word the error for OVERLONG lines
        self.format: Format | None = None
        self.format_line: int | None = None
        self.examples = 0
        self.messages = 0
        self.chars = 0
        self.lines = 0
        self.error_count = 0
        self.errors: list[LineError] = []
        self.overlong_sizes: dict[int, int] = {}  # line number -> bytes, for OVERLONG lines
        self._chat_decode = msgspec.json.Decoder(schema.Chat).decode
        self._pc_decode = msgspec.json.Decoder(schema.PromptCompletion).decode
        self._lenient_chat_decode = msgspec.json.Decoder(schema.LenientChat).decode
        self._lenient_pc_decode = msgspec.json.Decoder(schema.LenientPromptCompletion).decode

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
        decode, assistant, parts_chars = self._chat_decode, schema.Assistant, schema.parts_chars
        fallback, slow = self._lenient_chat, self._slow
        examples = messages = chars = 0
        for line in lines:
            if line:
                try:
                    msgs = decode(line).messages
                except ValueError:  # msgspec.DecodeError, or UnicodeDecodeError inside a string
                    if not fallback(line):
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
        decode, fallback, slow = self._pc_decode, self._lenient_prompt_completion, self._slow
        examples = chars = 0
        for line in lines:
            if line:
                try:
                    record = decode(line)
                except ValueError:
                    if not fallback(line):
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

    def _lenient_chat(self, line: bytes) -> bool:
        """Counts a valid chat line with extra fields and says True; False leaves the line to _slow."""
        try:
            record = self._lenient_chat_decode(line)
        except ValueError:
            return False
        if record.prompt is not schema.UNSET or record.completion is not schema.UNSET or not _utf8(line):
            return False
        chars = 0
        trainable = False
        for m in record.messages:
            content = m.content
            n = len(content) if content.__class__ is str else schema.parts_chars(content)  # type: ignore[arg-type]
            chars += n
            if m.__class__ is schema.LenientAssistant:
                trainable = trainable or bool(n and m.weight)
            elif m.weight is not schema.UNSET:
                return False
        if not trainable:
            return False
        self.examples += 1
        self.messages += len(record.messages)
        self.chars += chars
        return True

    def _lenient_prompt_completion(self, line: bytes) -> bool:
        """As _lenient_chat, for prompt/completion lines."""
        try:
            record = self._lenient_pc_decode(line)
        except ValueError:
            return False
        if record.messages is not schema.UNSET or not record.completion or not _utf8(line):
            return False
        self.examples += 1
        self.chars += len(record.prompt) + len(record.completion)
        return True

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


def _utf8(line: bytes) -> bool:
    if line.isascii():
        return True
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
