"""Seed 003's task models as the seed names them, loaded with transformers from a local directory or a hub id
(SUMMARIZER_MODEL=facebook/bart-large-cnn, SENTIMENT_MODEL=cardiffnlp/twitter-roberta-base-sentiment-latest,
GENERATOR_MODEL=gpt2). A hub id needs the network once (or a filled HF cache); a local directory never does.

Each runs behind the dynamic batcher: one padded forward (or `generate`) per batch, rows grouped by parameters so
every row in a `generate` call shares its lengths and sampling.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable
from typing import Any

from ministudio_serve.schemas.tasks import GeneratorParams, SentimentParams, SummarizerParams
from ministudio_serve.services.batcher import MicroBatcher
from ministudio_serve.services.task_models import Output, TaskModel

Item = tuple[str, Any]  # (text, parsed parameters)


def grouped(
    items: list[Item], key: Callable[[Any], Hashable], run: Callable[[list[str], Any], list[Output]]
) -> list[Output]:
    """Run each group of items that share parameters as one call; answers come back in the items' order."""
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, (_, params) in enumerate(items):
        groups[key(params)].append(i)
    out: list[Output | None] = [None] * len(items)
    for indexes in groups.values():
        params = items[indexes[0]][1]
        for i, answer in zip(indexes, run([items[i][0] for i in indexes], params), strict=True):
            out[i] = answer
    return [o for o in out if o is not None]


class HubModel(TaskModel):
    auto_class: str

    def __init__(self, ref: str, device: str, max_batch_size: int, batch_timeout_ms: float) -> None:
        super().__init__()
        self.backing = ref
        self.device = device
        self.model: Any = None
        self.tokenizer: Any = None
        self._batcher = MicroBatcher[Item, Output](self.name, self._batch, max_batch_size, batch_timeout_ms)

    def _load(self) -> None:
        import torch
        import transformers

        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.backing)
        model = getattr(transformers, self.auto_class).from_pretrained(self.backing)
        self.model = model.to(torch.device(device)).eval()

    def _encode(self, texts: list[str], padding_side: str = "right") -> Any:
        self.tokenizer.padding_side = padding_side
        limit = min(int(getattr(self.tokenizer, "model_max_length", 1024) or 1024), 1024)
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        return enc.to(self.model.device)

    def _batch(self, items: list[Item]) -> list[Output]:
        import torch

        with torch.inference_mode():
            return self._run_batch(items)

    def _run_batch(self, items: list[Item]) -> list[Output]:
        raise NotImplementedError

    async def run(self, text: str, params: Any, request_id: str, route: str) -> Output:
        await self.ensure()
        return await self._batcher.submit((text, params))

    async def close(self) -> None:
        await super().close()
        await self._batcher.close()
        self.model = self.tokenizer = None
        _free_gpu()


def _free_gpu() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sampling(temperature: float, top_p: float, seed: int | None) -> dict[str, Any]:
    import torch

    if temperature <= 0:
        return {"do_sample": False}
    if seed is not None:
        torch.manual_seed(seed)
    return {"do_sample": True, "temperature": temperature, "top_p": top_p}


class HubSummarizer(HubModel):
    name = model_type = "summarizer"
    params = SummarizerParams
    auto_class = "AutoModelForSeq2SeqLM"

    def _run_batch(self, items: list[Item]) -> list[Output]:
        return grouped(items, lambda p: (p.max_length, p.min_length, p.temperature, p.seed), self._summarize)

    def _summarize(self, texts: list[str], p: SummarizerParams) -> list[Output]:
        enc = self._encode(texts)
        # min_length=0 overrides a checkpoint's own (bart-large-cnn: 56); the request's bound is min_new_tokens.
        ids = self.model.generate(
            **enc,
            max_new_tokens=p.max_length,
            min_new_tokens=p.min_length,
            min_length=0,
            **_sampling(p.temperature, 1.0, p.seed),
        )
        return [self._answer(row) for row in ids]

    def _answer(self, row: Any) -> Output:
        special = set(self.tokenizer.all_special_ids)
        tokens = [t for t in row.tolist() if t not in special]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return Output(text, {"completion_tokens": len(tokens)})


class HubSentiment(HubModel):
    name = model_type = "sentiment"
    params = SentimentParams
    auto_class = "AutoModelForSequenceClassification"

    def _run_batch(self, items: list[Item]) -> list[Output]:
        probs = self.model(**self._encode([text for text, _ in items])).logits.float().softmax(-1)
        labels = {int(i): str(name).lower() for i, name in self.model.config.id2label.items()}
        out = []
        for row in probs.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            scores = {labels[i]: round(p, 4) for i, p in enumerate(row)}
            out.append(Output({"label": labels[best], "confidence": round(row[best], 4), "scores": scores}))
        return out


class HubGenerator(HubModel):
    name = model_type = "generator"
    params = GeneratorParams
    auto_class = "AutoModelForCausalLM"

    def _load(self) -> None:
        super()._load()
        if self.tokenizer.pad_token_id is None:  # gpt2 has none; left padding makes it invisible anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _run_batch(self, items: list[Item]) -> list[Output]:
        def key(p: GeneratorParams) -> Hashable:
            return (p.max_length, p.min_length, p.num_return_sequences, p.temperature, p.top_p, p.seed, tuple(p.stop))

        return grouped(items, key, self._generate)

    def _generate(self, texts: list[str], p: GeneratorParams) -> list[Output]:
        enc = self._encode(texts, padding_side="left")
        n = p.num_return_sequences
        ids = self.model.generate(
            **enc,
            max_new_tokens=p.max_length,
            min_new_tokens=p.min_length,
            num_return_sequences=n,
            pad_token_id=self.tokenizer.pad_token_id,
            **_sampling(p.temperature, p.top_p, p.seed),
        )
        new = ids[:, enc["input_ids"].shape[1] :]
        texts_out = [_cut(self.tokenizer.decode(row, skip_special_tokens=True), p.stop) for row in new]
        out = []
        for i in range(len(texts)):
            mine = texts_out[i * n : (i + 1) * n]
            tokens = int((new[i * n : (i + 1) * n] != self.tokenizer.pad_token_id).sum())
            out.append(Output(mine[0] if n == 1 else mine, {"completion_tokens": tokens}))
        return out


def _cut(text: str, stop: list[str]) -> str:
    hits = [text.find(s) for s in stop if s and s in text]
    return text[: min(hits)] if hits else text
