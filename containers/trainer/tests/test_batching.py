"""Loss weights per token, packing without cross-attention, and the weighted loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ministudio_train import attention
from ministudio_train.batching import IGNORE, Encoded, collate, encode, forward_loss, plan_steps, weighted_loss
from ministudio_train.data import Example

CHAT = Example(
    messages=(
        {"role": "system", "content": "be brief", "weight": 1},
        {"role": "user", "content": "say red blue", "weight": 1},
        {"role": "assistant", "content": "red blue", "weight": 1},
        {"role": "user", "content": "say ten", "weight": 1},
        {"role": "assistant", "content": "ten", "weight": 1},
    )
)


def _weighted_text(tokenizer: Any, enc: Encoded, weight: float) -> str:
    return tokenizer.decode([t for t, w in zip(enc.input_ids, enc.weights, strict=True) if w == weight])


def test_prompt_loss_weight_zero_leaves_only_assistant_turns_weighted(tiny_tokenizer: Any) -> None:
    enc = encode(tiny_tokenizer, CHAT, prompt_loss_weight=0.0, max_len=512)

    assert set(enc.weights) == {0.0, 1.0}
    # Each assistant turn's content and its end-of-turn marker is learnt; headers, system and user text are not.
    assert _weighted_text(tiny_tokenizer, enc, 1.0) == "red blue<|im_end|>\nten<|im_end|>\n"
    prompt = _weighted_text(tiny_tokenizer, enc, 0.0)
    assert "say red blue" in prompt and "be brief" in prompt and prompt.count("<|im_start|>assistant") == 2


def test_prompt_loss_weight_one_weights_every_token(tiny_tokenizer: Any) -> None:
    enc = encode(tiny_tokenizer, CHAT, prompt_loss_weight=1.0, max_len=512)

    assert enc.weights == [1.0] * len(enc.input_ids)
    assert tiny_tokenizer.decode(enc.input_ids) == tiny_tokenizer.apply_chat_template(
        [{"role": m["role"], "content": m["content"]} for m in CHAT.messages or ()], tokenize=False
    )


def test_fractional_prompt_weight_and_assistant_weight_zero(tiny_tokenizer: Any) -> None:
    messages = list(CHAT.messages or ())
    messages[2] = {**messages[2], "weight": 0}  # OpenAI's per-message weight: skip the first answer
    enc = encode(tiny_tokenizer, Example(messages=tuple(messages)), prompt_loss_weight=0.25, max_len=512)

    assert _weighted_text(tiny_tokenizer, enc, 1.0) == "ten<|im_end|>\n"
    assert _weighted_text(tiny_tokenizer, enc, 0.0) == "red blue<|im_end|>\n"
    assert set(enc.weights) == {0.0, 0.25, 1.0}


def test_prompt_completion_is_raw_text_with_eos(tiny_tokenizer: Any) -> None:
    enc = encode(tiny_tokenizer, Example(prompt="say red", completion=" red"), prompt_loss_weight=0.0, max_len=512)

    assert _weighted_text(tiny_tokenizer, enc, 1.0) == " red<|im_end|>"
    assert _weighted_text(tiny_tokenizer, enc, 0.0) == "say red"


def test_examples_are_truncated_to_max_seq_len(tiny_tokenizer: Any) -> None:
    enc = encode(tiny_tokenizer, CHAT, prompt_loss_weight=1.0, max_len=7)
    assert len(enc.input_ids) == len(enc.weights) == 7 and enc.truncated
    assert not encode(tiny_tokenizer, CHAT, prompt_loss_weight=1.0, max_len=512).truncated


def test_collate_packs_every_token_once_and_never_predicts_across_examples() -> None:
    examples = [Encoded([1, 2, 3], [1.0, 1.0, 1.0]), Encoded([4, 5], [0.0, 1.0]), Encoded([6, 7, 8, 9], [1.0] * 4)]

    batch = collate(examples, row_tokens=16, pad_id=0)

    assert batch.input_ids.shape == (1, 9) and batch.real_tokens == 9 and batch.examples == 3
    assert sorted(batch.input_ids[0].tolist()) == list(range(1, 10))
    # Position ids restart at each example, which transformers turns into a block-diagonal causal mask.
    assert batch.position_ids[0].tolist().count(0) == 3
    pairs = {
        (int(a), int(b))
        for a, b in zip(batch.input_ids[0], batch.labels[0], strict=True)
        if int(b) != IGNORE  # labels are the next token of the same example
    }
    assert pairs == {(1, 2), (2, 3), (4, 5), (6, 7), (7, 8), (8, 9)}
    assert float(batch.weights[batch.labels == IGNORE].abs().sum()) == 0.0


def test_collate_splits_rows_at_capacity_and_pads_with_weight_zero() -> None:
    examples = [Encoded([1] * 5, [1.0] * 5), Encoded([2] * 4, [1.0] * 4), Encoded([3] * 3, [1.0] * 3)]

    batch = collate(examples, row_tokens=8, pad_id=0)

    assert batch.input_ids.shape == (2, 8)  # [5 + 3] and [4 + 4 padding]
    assert int((batch.input_ids == 0).sum()) == 4 and batch.real_tokens == 12
    assert float(batch.weights[batch.input_ids == 0].sum()) == 0.0


def test_plan_steps_covers_each_example_once_per_epoch_and_reshuffles() -> None:
    first, second = plan_steps(10, 4, epoch=1, seed=42), plan_steps(10, 4, epoch=2, seed=42)

    assert [len(s) for s in first] == [4, 4, 2]
    assert sorted(i for s in first for i in s) == list(range(10))
    assert first != second and first == plan_steps(10, 4, epoch=1, seed=42)


def test_weighted_loss_matches_hand_computed_average() -> None:
    logits = torch.randn(1, 4, 7)
    labels = torch.tensor([[1, 2, 3, IGNORE]])
    weights = torch.tensor([[1.0, 0.5, 0.0, 0.0]])
    ce = torch.nn.functional.cross_entropy(logits[0, :3], labels[0, :3], reduction="none")

    loss = weighted_loss(logits, labels, weights)

    assert torch.allclose(loss, (ce[0] * 1.0 + ce[1] * 0.5) / 1.5)
    assert float(weighted_loss(logits, labels, torch.zeros(1, 4))) == 0.0


def _model(path: Path, implementation: str) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), attn_implementation=implementation).eval()


@pytest.mark.parametrize("implementation", [attention.NAME, "sdpa"])
def test_packed_examples_do_not_attend_to_each_other(
    tiny_model: Path, tiny_tokenizer: Any, implementation: str
) -> None:
    # Given three examples packed into two rows (the second padded), with our attention or transformers' own mask
    model = _model(tiny_model, implementation)
    texts = [("say red", " red blue"), ("say ten", " ten one two three"), ("say six", " six")]
    encoded = [encode(tiny_tokenizer, Example(prompt=p, completion=c), 1.0, 64) for p, c in texts]
    row_tokens = max(len(encoded[0].input_ids) + len(encoded[2].input_ids), len(encoded[1].input_ids))
    batch = collate(encoded, row_tokens=row_tokens, pad_id=0)
    assert batch.input_ids.shape[0] == 2 and int((batch.weights.sum(dim=1) > 0).sum()) == 2
    with torch.no_grad():
        packed = model(input_ids=batch.input_ids, position_ids=batch.position_ids, packed_segments=batch.segments,
                       use_cache=False).logits  # fmt: skip
        alone = {tuple(e.input_ids): model(input_ids=torch.tensor([e.input_ids]), use_cache=False).logits[0]
                 for e in encoded}  # fmt: skip
    # Then every example's logits are those it gets alone
    for row, lengths in enumerate(batch.segments):
        start = 0
        for n in lengths:
            ids = tuple(batch.input_ids[row, start : start + n].tolist())
            assert torch.allclose(packed[row, start : start + n], alone[ids], atol=1e-5)
            start += n


@pytest.mark.parametrize("prompt_loss_weight", [0.0, 0.3])
def test_forward_loss_with_logits_kept_only_where_weighted_equals_full_loss(
    tiny_model: Path, tiny_tokenizer: Any, prompt_loss_weight: float
) -> None:
    model = _model(tiny_model, attention.NAME)
    batch = collate([encode(tiny_tokenizer, CHAT, prompt_loss_weight, 64)], row_tokens=64, pad_id=0)
    with torch.no_grad():
        full = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).logits
        assert torch.allclose(forward_loss(model, batch), weighted_loss(full, batch.labels, batch.weights), atol=1e-5)
