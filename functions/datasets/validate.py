"""Streaming JSONL dataset validation: bytes in, a ValidationReport out, memory bounded whatever the file size.

The stream is split into lines with bytes.split on whole chunks (no per-byte Python work); a line that spans
chunks is kept as a list of pieces and joined once, and only up to Limits.max_line_bytes: past that the rest
of the line is counted and dropped until its newline. So memory stays within max_line_bytes plus one chunk.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator

from functions.datasets.checker import OVERLONG, LineChecker
from functions.datasets.report import Limits, LineError, ValidationReport, estimate_tokens, human_size

__all__ = ["Limits", "LineError", "ValidationReport", "validate_stream"]

_HEAD_BYTES = 16  # enough for every signature below and the BOM, even when chunks are tiny

# What people upload by mistake, told apart by the first bytes, so they get advice instead of N line errors.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an .xlsx/.docx file); unzip it and upload the .jsonl inside"),
    (b"\x1f\x8b", "gzip-compressed; decompress it and upload the .jsonl"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed; decompress it and upload the .jsonl"),
    (b"\xfd7zXZ\x00", "xz-compressed; decompress it and upload the .jsonl"),
    (b"PAR1", "a Parquet file; export it as JSON Lines"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\xff\xfe", "UTF-16 text; re-save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text; re-save it as UTF-8"),
)


def validate_stream(chunks: Iterable[bytes], limits: Limits = Limits()) -> ValidationReport:
    """Validate a JSONL dataset read as byte chunks of any size (an S3 body's iter_chunks(), a file's reads)."""
    checker = LineChecker(limits.max_errors, limits.max_line_bytes)
    max_line = limits.max_line_bytes
    file_errors: list[LineError] = []
    total = 0
    line_no = 1  # the line the next byte belongs to
    pending: list[bytes] = []  # pieces of line_no seen so far
    pending_len = 0
    skipping = False  # line_no is over max_line: its bytes are counted, not kept
    first = True
    for chunk in _with_head(chunks):
        total += len(chunk)
        if total > limits.max_bytes:
            file_errors.append(
                LineError(
                    None,
                    f"the file is larger than the {human_size(limits.max_bytes)} limit, so reading stopped at line "
                    f"{line_no}; split it into smaller datasets",
                )
            )
            break
        if first:
            first = False
            binary = _binary_kind(chunk)
            if binary:
                file_errors.append(
                    LineError(None, f"the file is {binary}, not JSON Lines text; upload a UTF-8 .jsonl file")
                )
                break
            if chunk.startswith(codecs.BOM_UTF8):
                chunk = chunk[len(codecs.BOM_UTF8) :]
        parts = chunk.split(b"\n")
        if len(parts) == 1:  # no newline: the current line goes on
            if skipping:
                checker.overlong_sizes[line_no] += len(chunk)
            elif pending_len + len(chunk) > max_line:
                checker.overlong_sizes[line_no] = pending_len + len(chunk)
                skipping, pending, pending_len = True, [], 0
            else:
                pending.append(chunk)
                pending_len += len(chunk)
            continue
        tail = parts.pop()
        # parts[0] ends the line in progress.
        if skipping:
            checker.overlong_sizes[line_no] += len(parts[0])
            parts[0] = OVERLONG
        elif pending:
            if pending_len + len(parts[0]) > max_line:
                checker.overlong_sizes[line_no] = pending_len + len(parts[0])
                parts[0] = OVERLONG
            else:
                pending.append(parts[0])
                parts[0] = b"".join(pending)
        if len(chunk) > max_line:  # only then can a line inside this one chunk be too long
            for i in range(len(parts)):
                if len(parts[i]) > max_line:
                    checker.overlong_sizes[line_no + i] = len(parts[i])
                    parts[i] = OVERLONG
        checker.feed(parts, line_no)
        line_no += len(parts)
        skipping = len(tail) > max_line
        if skipping:
            checker.overlong_sizes[line_no] = len(tail)
            pending, pending_len = [], 0
        else:
            pending, pending_len = ([tail], len(tail)) if tail else ([], 0)
    else:
        # The last line need not end with a newline.
        if skipping:
            checker.feed([OVERLONG], line_no)
        elif pending:
            checker.feed([b"".join(pending)], line_no)
    return _report(checker, file_errors, total, limits)


def _with_head(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The same bytes, the first chunk made at least _HEAD_BYTES long (unless the file is shorter)."""
    it = iter(chunks)
    head = b""
    for chunk in it:
        head += chunk
        if len(head) >= _HEAD_BYTES:
            break
    if head:
        yield head
    yield from it


def _binary_kind(head: bytes) -> str | None:
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    return None


def _report(checker: LineChecker, file_errors: list[LineError], total: int, limits: Limits) -> ValidationReport:
    if not file_errors:  # reading stopped early otherwise, so the counts mean nothing
        if total == 0:
            file_errors.append(
                LineError(None, 'the file is empty; upload one JSON object per line, e.g. {"messages": [...]}')
            )
        elif checker.lines == 0:
            file_errors.append(
                LineError(
                    None, 'the file has only blank lines; upload one JSON object per line, e.g. {"messages": [...]}'
                )
            )
        elif checker.examples < limits.min_examples:
            fix = " (fix the lines listed or add examples)" if checker.error_count else "; add more examples"
            file_errors.append(
                LineError(
                    None,
                    f"only {checker.examples} valid example{'' if checker.examples == 1 else 's'}; "
                    f"at least {limits.min_examples} are needed{fix}",
                )
            )
    error_count = checker.error_count + len(file_errors)
    return ValidationReport(
        valid=error_count == 0 and checker.examples >= limits.min_examples,
        format=checker.format,
        examples=checker.examples,
        lines=checker.lines,
        bytes=total,
        token_estimate=estimate_tokens(checker.format, checker.chars, checker.messages, checker.examples),
        messages=checker.messages,
        error_count=error_count,
        errors=(file_errors + checker.errors)[: limits.max_errors],
    )
