"""The streaming JSONL validator: what a user uploading a dataset sees, whatever the file and however it streams."""

from __future__ import annotations

import itertools
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.datasets.checker import LineChecker
from functions.datasets.explain import Accepted, explain_line
from functions.datasets.report import CHARS_PER_TOKEN, TOKENS_PER_COMPLETION, TOKENS_PER_MESSAGE
from functions.datasets.validate import Limits, LineError, ValidationReport, validate_stream

MiB = 1024**2


def chat(user: str = "What is LoRA?", reply: str = "A low-rank adapter.", system: str | None = None) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return {"messages": messages}


def jsonl(*records: Any) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


def good_chat(n: int) -> bytes:
    return jsonl(*(chat(f"question {i}", f"réponse {i} ✓") for i in range(n)))


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def only_error(report: ValidationReport) -> LineError:
    line_errors = [e for e in report.errors if e.line is not None]
    assert len(line_errors) == 1, report.errors
    return line_errors[0]


def test_valid_chat_file_passes_with_its_counts() -> None:
    # Given 12 chat examples, 4 of them with a system message and 3 messages
    records = [chat(f"q{i}", f"answer number {i}", system="Be brief." if i % 3 == 0 else None) for i in range(12)]
    data = jsonl(*records)

    report = validate_stream(chunked(data, 1000))

    assert report.valid and report.errors == [] and report.error_count == 0
    assert (report.format, report.examples, report.lines, report.bytes) == ("chat", 12, 12, len(data))
    assert report.messages == 4 * 3 + 8 * 2
    chars = sum(len(m["content"]) for r in records for m in r["messages"])
    assert report.token_estimate == -(-chars // CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * report.messages


def test_valid_prompt_completion_file_passes_with_its_counts() -> None:
    records = [{"prompt": f"Translate {i}:", "completion": f" traduction {i}"} for i in range(10)]

    report = validate_stream([jsonl(*records)])

    assert report.valid
    assert (report.format, report.examples, report.lines, report.messages) == ("prompt_completion", 10, 10, 0)
    chars = sum(len(r["prompt"]) + len(r["completion"]) for r in records)
    assert report.token_estimate == -(-chars // CHARS_PER_TOKEN) + TOKENS_PER_COMPLETION * 10


def test_openai_text_parts_names_and_weights_are_accepted() -> None:
    record = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
            {"role": "user", "name": "ana", "content": "Hi"},
            {"role": "assistant", "content": "Hello, how", "weight": 0},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello."}], "weight": 1},
        ],
        "metadata": {"source": "support"},  # unknown keys are allowed (the lenient decoder takes them)
    }
    report = validate_stream([jsonl(*[record] * 10)])
    assert report.valid, report.errors
    assert (report.examples, report.messages) == (10, 40)


def msg(role: Any, content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **extra}


def line(*messages: dict[str, Any]) -> bytes:
    return json.dumps({"messages": list(messages)}).encode()


HI, OK = msg("user", "hi"), msg("assistant", "ok")
IMAGE = [{"type": "image_url", "image_url": {"url": "x"}}]
BAD_LINES: list[tuple[str, bytes, str, str | None]] = [
    ("wrong role", line(HI, msg("bot", "yo")),
     'line 3: message 2 has role "bot"; use one of system, user, assistant', "messages[1].role"),
    ("no assistant", line(HI), "line 3 has no assistant message", "messages"),
    ("only empty assistant", line(HI, msg("assistant", "")), "no assistant message has both non-empty", "messages"),
    ("non-string content", line(msg("user", 42), OK),
     "message 1 (user) has content a number; expected a string or a list", "messages[0].content"),
    ("image part", line(msg("user", IMAGE), OK),
     'content part 1 has "image_url"; only text parts', "messages[0].content[0].type"),
    ("weight on user", line(msg("user", "a", weight=1), OK),
     'message 1 (user) has a "weight"; only assistant messages take one', "messages[0].weight"),
    ("weight not 0 or 1", line(HI, msg("assistant", "b", weight=2)),
     "message 2 (assistant) has weight 2; use 0", "messages[1].weight"),
    ("truncated json", line(HI, OK)[:-7], "line 3 ends before its JSON is complete", None),
    ("bad utf-8 in content", line(msg("user", "caf"), OK).replace(b"caf", b"caf\xe9"),
     "line 3 is not valid UTF-8 (byte 0xe9 at byte 47 of the line)", None),
    ("bad utf-8 in an ignored field", b'{"id": "\xff\xfe", ' + line(HI, OK)[1:], "line 3 is not valid UTF-8", None),
    ("NUL bytes", b'{"messages": []}\x00\x00\x00', "line 3 contains NUL bytes", None),
    ("JSON array", json.dumps([chat()]).encode(), "line 3 holds an array where a JSON object is expected", None),
    ("JSON string", b'"hello"', "line 3 holds a string where a JSON object is expected", None),
    ("JSON number", b"3.5", "line 3 holds a number", None),
    ("mixed formats", b'{"prompt": "a", "completion": "b"}',
     "line 3 is prompt/completion but the file is chat format (set by line 1)", None),
    ("neither format", b'{"text": "hello"}',
     'has neither "messages" (chat format) nor "prompt" and "completion"; found keys: "text"', None),
    ("both formats", json.dumps({"prompt": "p", "messages": [HI, OK]}).encode(),
     'line 3 has both "messages" and "prompt"/"completion"', None),
    ("two objects", line(HI, OK) * 2, "line 3 has more than one JSON value", None),
    ("NaN", b'{"messages": [{"role": "user", "content": "a", "x": NaN}]}', "line 3 is not valid JSON", None),
    ("pretty-printed", b"{", "the file looks like pretty-printed JSON", None),
    ("stray BOM", b"\xef\xbb\xbf" + line(HI, OK), "line 3 starts with a UTF-8 byte-order mark", None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "line", "reason", "field"), BAD_LINES, ids=[c[0] for c in BAD_LINES])
def test_bad_line_is_reported_with_its_line_number_and_reason(
    case: str, line: bytes, reason: str, field: str | None
) -> None:
    # Given a good file whose third line (after a blank one) is bad
    data = good_chat(1) + b"\n" + line + b"\n" + good_chat(10)

    report = validate_stream(chunked(data, 64))

    assert not report.valid
    error = only_error(report)
    assert error.line == 3
    assert reason in error.reason
    assert error.field == field
    assert report.examples == 11 and report.lines == 12


def test_prompt_completion_needs_a_non_empty_completion() -> None:
    data = jsonl(*({"prompt": "p", "completion": "c"} for _ in range(10)), {"prompt": "p", "completion": ""})
    error = only_error(validate_stream([data]))
    assert (error.line, error.field) == (11, "completion")
    assert '"completion" is empty' in error.reason


def test_prompt_completion_extra_fields_are_accepted_but_not_both_formats() -> None:
    good = {"prompt": "p", "completion": "c", "id": "ex-1"}
    data = jsonl(*[good] * 10, {**good, "messages": []})
    report = validate_stream([data])
    assert report.examples == 10
    error = only_error(report)
    assert error.line == 11 and 'has both "messages" and "prompt"/"completion"' in error.reason


def test_empty_file_is_invalid_with_a_file_level_error() -> None:
    report = validate_stream(iter([]))
    assert not report.valid
    assert [(e.line, e.reason.split(";")[0]) for e in report.errors] == [(None, "the file is empty")]


def test_file_of_blank_lines_is_invalid() -> None:
    report = validate_stream([b"\n\r\n   \n"])
    assert not report.valid and report.lines == 0
    assert "only blank lines" in report.errors[0].reason


def test_too_few_examples_is_a_file_level_error() -> None:
    report = validate_stream([good_chat(3)])
    assert not report.valid and report.error_count == 1
    assert report.errors[0].line is None
    assert report.errors[0].reason.startswith("only 3 valid examples; at least 10 are needed")


def test_png_upload_is_named_and_reading_stops() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 100
    report = validate_stream(chunked(png, 3))
    assert not report.valid and report.error_count == 1
    assert report.errors[0].line is None and "the file is a PNG image" in report.errors[0].reason


def test_binary_without_a_known_signature_is_reported_per_line() -> None:
    data = good_chat(10) + b"\x00\x01\x02\x03binary\x00\n"
    error = only_error(validate_stream([data]))
    assert error.line == 11 and "NUL bytes" in error.reason


def _lazy_long_line_stream(line_bytes: int, piece: int = MiB) -> Iterator[bytes]:
    """5 good lines, one line of line_bytes bytes, 10 good lines: the long line is made of one reused piece."""
    yield good_chat(5)
    block = b"x" * piece
    for _ in range(line_bytes // piece):
        yield block
    yield b"\n" + good_chat(10)


def test_100_mb_line_is_skipped_with_bounded_memory() -> None:
    tracemalloc.start()
    try:
        report = validate_stream(_lazy_long_line_stream(100 * MiB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    error = only_error(report)
    assert error.line == 6 and "is 100.0 MiB long, over the 4.0 MiB limit" in error.reason
    assert report.examples == 15 and report.lines == 16
    assert peak < 4 * MiB + 8 * MiB  # one line's limit plus a couple of chunks, nowhere near 100 MiB


def test_long_line_inside_one_big_chunk_is_caught() -> None:
    data = good_chat(10) + b'{"messages": "' + b"y" * 5000 + b'"}\n' + good_chat(1)
    report = validate_stream([data], Limits(max_line_bytes=1000))
    error = only_error(report)
    assert error.line == 11 and "over the 1000 bytes limit" in error.reason
    assert report.examples == 11


def test_last_line_without_newline_and_too_long_is_reported() -> None:
    report = validate_stream(chunked(good_chat(10) + b"z" * 3000, 100), Limits(max_line_bytes=1000))
    assert only_error(report).line == 11


def test_file_over_max_bytes_stops_reading() -> None:
    data = good_chat(200)
    report = validate_stream(chunked(data, 512), Limits(max_bytes=4096))
    assert not report.valid
    assert report.errors[0].line is None and "larger than the 4.0 KiB limit" in report.errors[0].reason
    assert report.bytes <= 4096 + 512


def test_errors_are_capped_but_all_counted() -> None:
    bad = json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode() + b"\n"
    data = good_chat(20) + bad * 80

    report = validate_stream([data], Limits(max_errors=50))

    assert not report.valid and report.error_count == 80
    assert len(report.errors) == 50
    assert [e.line for e in report.errors] == list(range(21, 71))


def test_file_level_error_is_kept_when_line_errors_fill_the_cap() -> None:
    bad = b"[]\n" * 60
    report = validate_stream([bad], Limits(max_errors=5))
    assert report.error_count == 61 and len(report.errors) == 5
    assert report.errors[0].line is None and "only 0 valid examples" in report.errors[0].reason


def test_bom_crlf_and_blank_lines_are_accepted() -> None:
    body = good_chat(10).replace(b"\n", b"\r\n\r\n")
    report = validate_stream(chunked(b"\xef\xbb\xbf" + body, 5))
    assert report.valid, report.errors
    assert (report.examples, report.lines) == (10, 10)


def test_line_numbers_count_blank_lines() -> None:
    data = b"\n\n" + good_chat(10) + b"\r\n   \n[1]\r\n"
    assert only_error(validate_stream([data])).line == 15


def _mixed_file() -> bytes:
    """BOM, CRLF, blank lines, multi-byte characters, and bad lines at known places."""
    lines = [json.dumps(chat(f"q{i} — ü", f"ré{i} 你好 🎉"), ensure_ascii=False).encode() for i in range(30)]
    lines[4] = b'{"messages": [{"role": "bot", "content": "\xc3\xa9"}]}'
    lines[9] = b"caf\xe9"
    lines[15] = b""
    lines[20] = b'{"prompt": "x", "completion": "y"}'
    lines[25] = b'{"messages": [{"role": "user", "content": "unfinished \xe2\x82\xac'
    return b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n"


MIXED_ERROR_LINES = [5, 10, 21, 26]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 4096, 1 << 20])
def test_line_numbers_do_not_depend_on_chunk_size(size: int) -> None:
    report = validate_stream(chunked(_mixed_file(), size))
    assert [e.line for e in report.errors] == MIXED_ERROR_LINES
    assert (report.examples, report.lines, report.format) == (25, 29, "chat")


@given(st.lists(st.integers(min_value=1, max_value=4000), min_size=1, max_size=12, unique=True))
@settings(max_examples=60, deadline=None)
def test_any_chunking_gives_the_same_report(cuts: list[int]) -> None:
    data = _mixed_file()
    bounds = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert validate_stream(pieces).to_dict() == validate_stream([data]).to_dict()


def test_multibyte_character_split_across_chunks_is_fine() -> None:
    data = good_chat(10)
    cut = data.index("é".encode()) + 1  # between the two bytes of é
    report = validate_stream([data[:cut], data[cut:]])
    assert report.valid, report.errors


def test_memory_stays_bounded_over_a_50_mb_stream() -> None:
    # ~1 MiB of whole 8 KiB lines, reused for every chunk: long lines keep tracemalloc's per-object cost low
    line = jsonl(chat("Summarise this. " * 256, "Here is the summary. " * 100))
    block = line * (MiB // len(line))
    chunks = 50 * MiB // len(block)
    tracemalloc.start()
    try:
        report = validate_stream(block for _ in range(chunks))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.valid and report.bytes == chunks * len(block) >= 49 * MiB
    assert peak < 6 * MiB  # a few chunks' worth, whatever the file size


def test_report_to_dict_is_json() -> None:
    report = validate_stream([good_chat(2) + b"[]\n"])
    stored = json.loads(json.dumps(report.to_dict()))
    assert stored["valid"] is False and stored["error_count"] == 2
    assert stored["errors"][1] == {"line": 3, "reason": stored["errors"][1]["reason"], "field": None}


# The fast path (typed decoder) must never accept what the precise path rejects, and must count the same.
# Messages are mostly well-formed with one optional oddity, so records get far enough to reach every check.
_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
_parts = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": _text}), max_size=2)
_plain_message = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user"]), "content": st.one_of(_text, _parts)}, optional={"name": _text}
    ),
    st.fixed_dictionaries(  # replies are mostly non-empty, or most records would have nothing to train on
        {"role": st.just("assistant"), "content": st.one_of(_text, _text.filter(bool), _text.filter(bool), _parts)},
        optional={"name": _text, "weight": st.sampled_from([0, 1])},
    ),
)
_defect = st.sampled_from(
    [
        ("weight", 2),
        ("weight", 1),
        ("weight", True),
        ("weight", 1.0),
        ("weight", None),
        ("content", [{"type": "image_url", "text": "x"}]),
        ("content", [{"type": "text"}]),
        ("content", [{"type": "text", "text": "x", "extra": 1}]),
        ("content", 7),
        ("content", None),
        ("name", 3),
        ("name", None),
        ("extra", 1),
        ("role", "bot"),
        ("role", None),
    ]
)


@st.composite
def _records(draw: Any) -> dict[str, Any]:
    """A prompt/completion record, or chat messages that are well-formed but for at most one defect."""
    extra = draw(st.sampled_from([{}, {}, {"id": "ex-1"}, {"prompt": "p"}, {"completion": "c"}, {"messages": []}]))
    if draw(st.integers(0, 4)) == 0:
        prompt, completion = draw(st.one_of(_text, st.integers())), draw(st.one_of(_text, _text, st.none()))
        return {"prompt": prompt, "completion": completion, **extra}
    messages = draw(st.lists(_plain_message, max_size=4))  # [] too: that is an error of its own
    if messages and draw(st.booleans()):
        i = draw(st.integers(0, len(messages) - 1))
        key, value = draw(_defect)
        messages[i] = {**messages[i], key: value}
    return {**extra, "messages": messages}


@given(_records())
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fast_path_agrees_with_the_precise_path(record: dict[str, Any]) -> None:
    file_format: Any = "chat" if "messages" in record else "prompt_completion"
    line = json.dumps(record, ensure_ascii=False).encode()
    checker = LineChecker(max_errors=5, max_line_bytes=MiB)
    checker.format, checker.format_line = file_format, 1

    checker.feed([line], 2)
    precise = explain_line(line, 2, file_format, 1)

    if isinstance(precise, Accepted):
        assert (checker.examples, checker.messages, checker.chars) == (1, precise.messages, precise.chars)
    else:
        assert checker.examples == 0 and checker.error_count == 1
