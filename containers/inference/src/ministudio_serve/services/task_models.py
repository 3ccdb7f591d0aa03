"""Seed 003's task models (`summarizer`, `sentiment`, `generator`, each at `v1`): what answers each name, loading
once and unloading on shutdown, and the offline defaults.

Offline (the default, nothing fetched): summarizer and generator run on the server's LLM through its continuous
batcher; sentiment is VADER (the `vaderSentiment` package's lexicon model) behind the dynamic batcher. A local
directory or hub id in SUMMARIZER_MODEL / SENTIMENT_MODEL / GENERATOR_MODEL loads that model with transformers instead
(services/hub_models.py): the seed's facebook/bart-large-cnn, cardiffnlp/twitter-roberta-base-sentiment-latest, gpt2.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from typing import Any

from ministudio_serve.errors import ApiError
from ministudio_serve.schemas.tasks import GeneratorParams, SentimentParams, SummarizerParams, TaskParams
from ministudio_serve.services.batcher import MicroBatcher
from ministudio_serve.services.generation import GenerationService

log = logging.getLogger(__name__)
VERSION = "v1"


@dataclass
class Output:
    result: str | list[str] | dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


# Loads run one at a time: transformers' lazy imports are not safe from two threads at once (a half-imported module
# surfaces as "cannot import name 'AutoModel'"), and the models share the CPU anyway.
_LOAD_LOCK = threading.Lock()


class LoadOnce:
    """A model loaded at most once (at startup, or by its first request) and released by `close`.

    `gate` holds loads back until the LLM has loaded (its loader imports transformers in another thread)."""

    name: str
    version: str = VERSION
    backing: str

    def __init__(self) -> None:
        self._load_seconds: float | None = None
        self.load_error: str | None = None
        self.closed = False
        self.gate: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self._loading: asyncio.Future[None] | None = None

    @property
    def load_seconds(self) -> float | None:
        return self._load_seconds

    @property
    def loaded(self) -> bool:
        return self.load_seconds is not None and not self.closed

    def _unavailable(self) -> ApiError:
        why = "is shut down" if self.closed else f"failed to load ({self.load_error})"
        return ApiError(503, f"model {self.name} {why}", code="model_not_loaded")

    async def ensure(self) -> None:
        if self.loaded:
            return
        if self.gate is not None:
            await self.gate.wait()
        async with self._lock:
            if self.loaded:
                return
            if self.closed or self.load_error is not None:
                raise self._unavailable()
            started = time.perf_counter()
            # Shielded: a cancelled request must not orphan a load that `close` then cannot wait for.
            self._loading = asyncio.ensure_future(asyncio.to_thread(self._locked_load))
            try:
                await asyncio.shield(self._loading)
            except Exception as exc:  # one model failing to load must not take the others (or the server) down
                log.exception("task model %s failed to load", self.name)
                self.load_error = f"{type(exc).__name__}: {exc}"
                raise self._unavailable() from exc
            self._load_seconds = time.perf_counter() - started
            log.info(
                "task model %s:%s (%s) loaded in %.2f s", self.name, self.version, self.backing, self._load_seconds
            )

    def _locked_load(self) -> None:
        with _LOAD_LOCK:
            self._load()

    def _load(self) -> None:
        """Runs in a worker thread; models that load elsewhere (the LLM) have nothing to do."""

    async def close(self) -> None:
        """Refuse new work, let a load in flight finish; subclasses then drop the weights."""
        self.closed = True
        if self._loading is not None and not self._loading.done():
            await asyncio.wait([self._loading])


class TaskModel(LoadOnce, abc.ABC):
    model_type: str
    params: type[TaskParams]

    def parse(self, raw: dict[str, Any]) -> TaskParams:
        from pydantic import ValidationError

        try:
            return self.params.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            message = f"parameters.{where}: {first['msg']}" if where else f"parameters: {first['msg']}"
            accepted = ", ".join(sorted(self.params.model_fields)) or "none"
            raise ApiError(400, f"{message} (model {self.name} accepts: {accepted})", param="parameters") from exc

    @abc.abstractmethod
    async def run(self, text: str, params: Any, request_id: str, route: str) -> Output: ...


class LLMTask(TaskModel):
    """A task answered by the server's LLM; it is loaded (and unloaded) with the engine."""

    def __init__(
        self,
        service: Callable[[], GenerationService],
        backing: str,
        llm_load_seconds: Callable[[], float | None],
        model: str | None = None,
    ) -> None:
        super().__init__()
        self.service = service  # raises the route's 503 while the engine is still loading
        self.backing = backing
        self.llm_load_seconds = llm_load_seconds
        self.model = model  # an adapter name; None for the base model

    @property
    def load_seconds(self) -> float | None:
        return self.llm_load_seconds()

    @property
    def loaded(self) -> bool:
        try:
            self.service()
        except ApiError:
            return False
        return not self.closed

    async def ensure(self) -> None:
        self.service()


class LLMSummarizer(LLMTask):
    name = model_type = "summarizer"
    params = SummarizerParams

    async def run(self, text: str, params: SummarizerParams, request_id: str, route: str) -> Output:
        service = self.service()
        words = max(1, round(params.max_length * 0.7))  # ~0.7 English words per token
        bounds = (
            f"at most {words} words"
            if not params.min_length
            else (f"between {max(1, round(params.min_length * 0.7))} and {words} words")
        )
        messages = [
            {"role": "system", "content": "You write faithful, concise summaries."},
            {
                "role": "user",
                "content": f"Summarize the following text in {bounds}. Reply with the summary only.\n\n{text}",
            },
        ]
        result = await service.generate_text(
            service.model_name,
            messages,
            route,
            request_id,
            max_tokens=params.max_length,
            min_tokens=params.min_length,
            temperature=params.temperature,
            seed=params.seed,
        )
        return Output(result.text.strip(), _usage(result.finish_reason, result.prompt_tokens, result.completion_tokens))


class LLMGenerator(LLMTask):
    """Continues the text as gpt2 would (no chat template); also what an adapter's name answers with."""

    name = model_type = "generator"
    params = GeneratorParams

    async def run(self, text: str, params: GeneratorParams, request_id: str, route: str) -> Output:
        service = self.service()
        model = self.model or service.model_name

        async def one(i: int) -> Any:
            seed = None if params.seed is None else params.seed + i  # distinct, reproducible sequences
            return await service.generate_text(
                model,
                text,
                route,
                request_id if params.num_return_sequences == 1 else f"{request_id}-{i}",
                max_tokens=params.max_length,
                min_tokens=params.min_length,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=seed,
                stop=tuple(params.stop),
            )

        results = await asyncio.gather(*(one(i) for i in range(params.num_return_sequences)))
        texts = [r.text for r in results]
        meta = _usage(results[0].finish_reason, results[0].prompt_tokens, sum(r.completion_tokens for r in results))
        return Output(texts[0] if len(texts) == 1 else texts, meta)


def _usage(finish_reason: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"finish_reason": finish_reason, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}


class VaderSentiment(TaskModel):
    """VADER: a lexicon and rules tuned on social-media text, no weights to fetch. The label follows VADER's own
    thresholds on the compound score (>= 0.05 positive, <= -0.05 negative); confidence is |compound| for a polar
    label and 1 - |compound| for neutral."""

    name = model_type = "sentiment"
    params = SentimentParams

    def __init__(self, max_batch_size: int, batch_timeout_ms: float) -> None:
        super().__init__()
        self.backing = f"vaderSentiment {package_version('vaderSentiment')}"
        self._analyzer: Any = None
        self._batcher = MicroBatcher[str, Output]("sentiment", self._score, max_batch_size, batch_timeout_ms)

    def _load(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def _score(self, texts: list[str]) -> list[Output]:
        out = []
        for text in texts:
            s = self._analyzer.polarity_scores(text)
            compound = float(s["compound"])
            label = "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"
            confidence = abs(compound) if label != "neutral" else 1 - abs(compound)
            scores = {"negative": s["neg"], "neutral": s["neu"], "positive": s["pos"], "compound": compound}
            out.append(Output({"label": label, "confidence": round(confidence, 4), "scores": scores}))
        return out

    async def run(self, text: str, params: SentimentParams, request_id: str, route: str) -> Output:
        await self.ensure()
        return await self._batcher.submit(text)

    async def close(self) -> None:
        await super().close()
        await self._batcher.close()
        self._analyzer = None
