"""Per-row token choice (greedy, temperature, top-p with a per-request seed) and streaming detokenization."""

from __future__ import annotations

from typing import Any

import torch

from ministudio_serve.engines.base import Sampling

GREEDY_BELOW = 1e-5  # temperatures this small are greedy, as in vLLM
NUCLEUS_CANDIDATES = 1024


def make_generator(sampling: Sampling) -> torch.Generator | None:
    if sampling.temperature < GREEDY_BELOW:
        return None
    generator = torch.Generator(device="cpu")
    if sampling.seed is not None:
        generator.manual_seed(sampling.seed)
    else:
        generator.seed()
    return generator


def choose(logits: torch.Tensor, params: list[Sampling], generators: list[torch.Generator | None]) -> list[int]:
    """One token per row of logits (rows, vocab)."""
    greedy = logits.argmax(dim=-1).tolist()
    out = []
    for row, (sampling, generator) in enumerate(zip(params, generators, strict=True)):
        if generator is None:
            out.append(int(greedy[row]))
        else:
            # On the CPU in fp32, so a seed gives the same text on any device.
            out.append(_sample(logits[row].float().cpu(), sampling, generator))
    return out


def _sample(scores: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> int:
    scores = scores / sampling.temperature
    if sampling.top_p >= 1.0:
        return _draw(torch.softmax(scores, dim=-1), torch.arange(scores.numel()), generator)
    # The nucleus almost always lies in the top few hundred tokens: rank those only (sorting all ~50k tokens of
    # the vocabulary per row per step dominated sampling), and sort everything only when they hold too little mass.
    log_total = torch.logsumexp(scores, dim=-1)
    top, order = scores.topk(min(NUCLEUS_CANDIDATES, scores.numel()))
    probs = (top - log_total).exp()
    if float(probs.sum()) < sampling.top_p:
        top, order = scores.sort(descending=True)
        probs = (top - log_total).exp()
    # Keep the smallest prefix whose mass reaches top_p (always at least the most likely token: top_p=0, which
    # seed 002's range allows, selects no prefix at all).
    keep = max(1, int(((probs.cumsum(-1) - probs) < sampling.top_p).sum()))
    return _draw(probs[:keep], order[:keep], generator)


def _draw(probs: torch.Tensor, tokens: torch.Tensor, generator: torch.Generator) -> int:
    """Inverse-CDF sampling with one uniform draw from the request's generator."""
    cdf = probs.cumsum(-1)
    u = torch.rand((), generator=generator) * cdf[-1]
    index = int(torch.searchsorted(cdf, u.reshape(1), right=True).clamp(max=cdf.numel() - 1))
    return int(tokens[index])


class TextTracker:
    """Turns generated ids into text deltas, ending at the first stop string and never emitting part of one.

    Detokenizes incrementally, as vLLM does: each step decodes only the ids since the last complete character
    (`prefix`..end) instead of every id so far, so a stream's cost per token stays flat however long it runs.
    """

    def __init__(self, tokenizer: Any, stop: tuple[str, ...]) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self._longest_stop = max((len(s) for s in self.stop), default=0)
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already emitted
        self.text = ""  # the text of ids[:read], complete characters only
        self.prefix = 0  # ids[prefix:read] decode to the tail of `text`: the context the next decode starts from
        self.read = 0

    def push(self, token_id: int) -> tuple[str, bool]:
        """Add a token; return the text safe to emit now and whether a stop string ended the text."""
        self.ids.append(token_id)
        before = len(self.text)
        head = self._decode(self.prefix, self.read)
        tail = self._decode(self.prefix, len(self.ids))
        # An incomplete UTF-8 sequence decodes to U+FFFD until its last byte arrives: hold it back.
        if len(tail) > len(head) and not tail.endswith("\ufffd"):
            self.text += tail[len(head) :]
            self.prefix, self.read = self.read, len(self.ids)
        if self._stopped(before):
            return self._emit(len(self.text)), True
        return self._emit(len(self.text) - self._partial_stop(self.text)), False

    def _decode(self, start: int, end: int) -> str:
        return str(self.tokenizer.decode(self.ids[start:end], skip_special_tokens=True)) if end > start else ""

    def _stopped(self, before: int) -> bool:
        """Cut `text` at the first stop string; only its new part (and a stop's length before it) can hold one."""
        if not self.stop:
            return False
        start = max(0, before - self._longest_stop + 1)
        hits = [at for at in (self.text.find(stop, start) for stop in self.stop) if at != -1]
        if hits:
            self.text = self.text[: min(hits)]
        return bool(hits)

    def _partial_stop(self, text: str) -> int:
        """Length of the longest tail of text that could still grow into a stop string."""
        hold = 0
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(text)), hold, -1):
                if stop.startswith(text[-size:]):
                    hold = size
                    break
        return hold

    def _emit(self, end: int) -> str:
        end = max(end, self.sent)
        delta = self.text[self.sent : end]
        self.sent = end
        return delta

    def flush(self) -> str:
        """The rest of the text once generation ended without a stop string (an incomplete character included)."""
        if self.read < len(self.ids):
            self.text += self._decode(self.prefix, len(self.ids))[len(self._decode(self.prefix, self.read)) :]
            self.read = len(self.ids)
        return self._emit(len(self.text))
