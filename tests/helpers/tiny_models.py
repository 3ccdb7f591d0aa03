"""The tiny random Llama every suite uses (hidden 64, two layers: a forward pass takes milliseconds), a small
ChatML tokenizer to go with it when no real one is wanted, and peft adapters on it as the trainer saves them.

Test support only: it lives under tests/, so no wheel ships it. Torch and transformers are imported when used."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.helpers.datasets import WORDS

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_model(vocab: int, seed: int = 0, name: str = BASE, **config: Any) -> LlamaForCausalLM:
    """A random Llama for a tokenizer of `vocab` tokens, in eval mode, named `name` (peft records it as the base).
    The same seed and config give the same weights; `config` overrides LlamaConfig's fields."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fields: dict[str, Any] = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "eos_token_id": 2,
        "pad_token_id": 2,
        "bos_token_id": 1,
        "initializer_range": 0.1,  # peakier logits than the default: greedy choices are not near-ties
        **config,
    }
    torch.manual_seed(seed)
    llama_config = LlamaConfig(vocab_size=vocab, **fields)
    llama_config.name_or_path = name
    model = LlamaForCausalLM(llama_config).eval()
    model.name_or_path = name
    return model


def build_tokenizer(dest: Path) -> Any:
    """A byte-level BPE of a few hundred tokens with ChatML specials, like SmolLM2's but small; saved in `dest`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [" ".join(WORDS), "repeat after me: user assistant system", *(f"say {w} {w}" for w in WORDS)]
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus * 5, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    fast.save_pretrained(str(dest))
    return fast


def build_model_dir(dest: Path, seed: int = 0) -> Path:
    """A model directory the trainer and the server load like a downloaded one: the small tokenizer and a tiny
    Llama with tied embeddings and the default initialisation (training must move its loss, not fight it)."""
    tokenizer = build_tokenizer(dest)
    model = tiny_model(
        len(tokenizer),
        seed,
        name=str(dest),
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=0.02,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model.save_pretrained(str(dest), safe_serialization=True)
    return dest


def save_adapter(path: Path, tokenizer: Any, seed: int, target: list[str] | None = None, rank: int = 8) -> Path:
    """A peft LoRA adapter on the tiny model with random (non-zero) B, as the trainer would save it."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = tiny_model(len(tokenizer))
    config = LoraConfig(
        r=rank, lora_alpha=16, target_modules=target or ["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0
    )
    peft_model = get_peft_model(model, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.3)
    peft_model.save_pretrained(str(path))
    return path


def tiny_serving_model(folder: Path) -> Path:
    """A folder `ministudio-serve --model` loads in a blink: the tiny Llama with SmolLM2's real tokenizer (so chat
    templates and stop tokens behave as with the real model)."""
    from ministudio_common import loader
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(loader.resolve(BASE))
    tiny_model(len(tokenizer)).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
