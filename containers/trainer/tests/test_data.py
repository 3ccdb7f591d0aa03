"""Reading datasets: accepted formats, and errors that name the file and line to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers.datasets import chat_rows, write_jsonl

from ministudio_train.data import read_examples, split_validation
from ministudio_train.errors import TrainError


def test_chat_prompt_completion_and_content_parts_are_read(tmp_path: Path) -> None:
    rows = [
        *chat_rows(2),
        {"prompt": "say red", "completion": " red"},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "say "}, {"type": "text", "text": "ten"}]},
                      {"role": "assistant", "content": "ten"}]},
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    path.write_text(path.read_text() + "\n   \n")  # blank lines are skipped

    examples = read_examples(str(path))

    assert len(examples) == 4
    assert (examples[2].prompt, examples[2].completion) == ("say red", " red")
    assert examples[3].messages is not None and examples[3].messages[0]["content"] == "say ten"


def test_a_directory_reads_every_jsonl_in_name_order(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "b.jsonl", chat_rows(2, seed=2))
    write_jsonl(tmp_path / "a.jsonl", chat_rows(3, seed=1))
    (tmp_path / "notes.txt").write_text("ignored")

    examples = read_examples(str(tmp_path))

    assert [e.line for e in examples] == [1, 2, 3, 1, 2]


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ('{"messages": [', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "no assistant message"),
        ('{"messages": [{"role": "wizard", "content": "hi"}]}', "needs a role"),
        ('{"messages": [{"role": "assistant", "content": "a", "weight": 3}]}', "weight must be 0 or 1"),
        ('{"text": "hello"}', 'expected a "messages" list'),
    ],
)
def test_bad_line_fails_with_its_line_number(tmp_path: Path, bad_line: str, reason: str) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [*chat_rows(2), bad_line, *chat_rows(1)])

    with pytest.raises(TrainError) as info:
        read_examples(str(path))

    assert (info.value.code, info.value.param) == ("invalid_training_file", "training_file")
    assert "line 3 of train.jsonl" in info.value.message and reason in info.value.message


def test_validation_file_errors_carry_their_own_code(tmp_path: Path) -> None:
    path = tmp_path / "valid.jsonl"
    path.write_bytes(json.dumps(chat_rows(1)[0]).encode() + b"\n\xff\xfe\n")

    with pytest.raises(TrainError) as info:
        read_examples(str(path), "validation_file")

    assert (info.value.code, info.value.param) == ("invalid_validation_file", "validation_file")
    assert "line 2" in info.value.message and "UTF-8" in info.value.message


def test_missing_and_empty_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(TrainError, match="does not exist"):
        read_examples(str(tmp_path / "nope.jsonl"))
    with pytest.raises(TrainError, match="holds no examples"):
        read_examples(str(tmp_path / "empty.jsonl"))


def test_validation_split_holds_out_a_seeded_fraction_and_keeps_training_data(tmp_path: Path) -> None:
    examples = read_examples(str(write_jsonl(tmp_path / "t.jsonl", chat_rows(20))))

    train, valid = split_validation(examples, 0.1, seed=1)

    assert (len(train), len(valid)) == (18, 2)
    assert {e.line for e in train} | {e.line for e in valid} == set(range(1, 21))
    assert split_validation(examples, 0.1, seed=1) == (train, valid)
    assert split_validation(examples[:1], 0.5, seed=1) == (examples[:1], [])  # never hold out the only example
