"""Streaming detokenization (TextTracker): the deltas of an incremental decode add up to the full decode, stop
strings cut where they begin (even across tokens), incomplete characters are held back, and each step decodes a
bounded window of ids however long the stream is."""

from __future__ import annotations

import random
from typing import Any

import pytest

from ministudio_serve.engines.sampling import TextTracker

TEXTS = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "Emoji 🙂🚀 and CJK 漢字かな交じり文, accents: déjà vu, naïve café.",
    "Code:\n```python\ndef f(x):\n    return x ** 2\n```\n  indented   spaces\t tabs",
]


def _stream(tracker: TextTracker, ids: list[int]) -> tuple[str, bool]:
    out = []
    for token in ids:
        delta, stopped = tracker.push(token)
        out.append(delta)
        if stopped:
            return "".join(out), True
    return "".join(out) + tracker.flush(), False


@pytest.mark.parametrize("text", TEXTS)
def test_deltas_add_up_to_the_full_decode(tokenizer: Any, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    streamed, stopped = _stream(TextTracker(tokenizer, ()), ids)
    assert not stopped
    assert streamed == tokenizer.decode(ids, skip_special_tokens=True)


def test_random_ids_stream_like_the_full_decode(tokenizer: Any) -> None:
    rng = random.Random(7)
    for _ in range(20):
        ids = [rng.randrange(tokenizer.vocab_size) for _ in range(rng.randrange(1, 60))]
        streamed, _ = _stream(TextTracker(tokenizer, ()), ids)
        assert streamed == tokenizer.decode(ids, skip_special_tokens=True)


def test_a_stop_string_spanning_tokens_cuts_before_it(tokenizer: Any) -> None:
    text = TEXTS[0]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    streamed, stopped = _stream(TextTracker(tokenizer, ("brown fox",)), ids)
    assert stopped
    assert streamed == text[: text.find("brown fox")]


def test_a_partial_stop_is_held_back_then_released(tokenizer: Any) -> None:
    ids = tokenizer("the end is near", add_special_tokens=False)["input_ids"]
    tracker = TextTracker(tokenizer, ("end of story",))
    streamed, stopped = _stream(tracker, ids)
    assert not stopped and streamed == "the end is near"


def test_each_step_decodes_a_bounded_window(tokenizer: Any) -> None:
    class Counting:
        def __init__(self) -> None:
            self.decoded = 0

        def decode(self, ids: list[int], **kwargs: Any) -> str:
            self.decoded += len(ids)
            return str(tokenizer.decode(ids, **kwargs))

    ids = tokenizer(" ".join(TEXTS) * 8, add_special_tokens=False)["input_ids"]
    counting = Counting()
    streamed, _ = _stream(TextTracker(counting, ()), ids)
    assert streamed == tokenizer.decode(ids, skip_special_tokens=True)
    # Re-decoding everything each step costs ~n²/2 ids; the incremental window keeps it linear.
    assert counting.decoded < 8 * len(ids)
