"""Names shown back are safe to display, and upload-time refusals say which line, not only which byte."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from functions.core.errors import InvalidRequest, UnsupportedMediaType
from functions.datasets.filenames import FALLBACK_NAME, clean_filename, display_filename, strip_filename
from functions.datasets.intake import sniff
from functions.datasets.validate import validate_stream


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\y.jsonl", "y.jsonl"),
        ("a/b\\c/../d.jsonl", "d.jsonl"),
        ("invoice\u202elnosj.jsonl", "invoicelnosj.jsonl"),  # RLO would show the tail reversed
        ("\u2066x\u2069\u200e\u200f\u061c\u202a\u202b\u202c\u202d.jsonl", "x.jsonl"),
        ("line\nbreak\r\t\x00\x1b[31m\x7f\x85\x9f.jsonl", "linebreak[31m.jsonl"),
        ("para\u2028graph\u2029.jsonl", "paragraph.jsonl"),
        ("  spaced name.jsonl  ", "spaced name.jsonl"),
        ("my chats été+v2 数据.jsonl", "my chats été+v2 数据.jsonl"),  # real names stay as written
        ("x" * 300 + ".jsonl", "x" * 249 + ".jsonl"),  # too long: the stem is shortened, not the extension
        ("x" * 300, "x" * 255),
    ],
)
def test_names_lose_directories_and_invisible_controls(raw: str, shown: str) -> None:
    assert clean_filename(raw) == shown
    assert display_filename(raw) == shown


@pytest.mark.parametrize("raw", ["", "   ", "dir/", "C:\\dir\\", "..", "a/..", ".\u200e.", "\u202e\u2066", "\x00\n"])
def test_nothing_left_is_a_400_naming_filename_or_the_fallback_where_nobody_can_answer(raw: str) -> None:
    assert strip_filename(raw) == ""
    with pytest.raises(InvalidRequest) as caught:
        clean_filename(raw)
    assert caught.value.param == "filename" and "no usable name" in caught.value.message
    assert display_filename(raw) == FALLBACK_NAME


def test_refusal_message_escapes_what_it_quotes() -> None:
    with pytest.raises(InvalidRequest) as caught:
        clean_filename("\u202e\x1b")
    assert "\u202e" not in caught.value.message and "\x1b" not in caught.value.message


def _lines(n: int) -> bytes:
    return b"".join(json.dumps({"prompt": f"p{i}", "completion": f"c{i}"}).encode() + b"\n" for i in range(n))


def test_non_utf8_head_is_refused_with_its_line_and_offset() -> None:
    # Given a head whose 13th line holds a Latin-1 byte
    before = _lines(12)
    head = before + b'{"prompt": "caf\xe9", "completion": "x"}\n' + _lines(5)
    offset = len(before) + len(b'{"prompt": "caf')

    with pytest.raises(UnsupportedMediaType) as caught:
        sniff(head)

    assert f"on line 13, at byte offset {offset}" in caught.value.message and "0xe9" in caught.value.message


def test_non_utf8_on_the_first_line_says_line_1() -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        sniff(b'{"a": "\xff\xfe\xfd\xfc\xfb\xfa"}\n{"b": 1}\n')
    assert "on line 1," in caught.value.message


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


@pytest.mark.parametrize("fmt", ["chat", "prompt_completion"])
@pytest.mark.parametrize("chunk", [7, 4093, 65536, 1 << 20])
def test_non_utf8_deep_in_a_large_file_is_reported_on_its_own_line(fmt: str, chunk: int) -> None:
    # Given ~1 MiB of valid lines with bad bytes on line 9001 (past any upload-time sniff) and blank lines before it
    def record(i: int) -> bytes:
        if fmt == "chat":
            messages = [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"réponse {i}"}]
            return json.dumps({"messages": messages}, ensure_ascii=False).encode()
        return json.dumps({"prompt": f"q{i}", "completion": f"réponse {i}"}, ensure_ascii=False).encode()

    lines = [record(i) for i in range(12000)]
    lines[99] = b""
    lines[9000] = lines[9000].replace("é".encode(), b"\xe9")  # Latin-1 where UTF-8 was expected
    data = b"\n".join(lines) + b"\n"

    report = validate_stream(_chunks(data, chunk))

    assert [e.line for e in report.errors] == [9001]
    assert report.errors[0].reason.startswith("line 9001 is not valid UTF-8 (byte 0xe9")
    assert report.examples == 11998
