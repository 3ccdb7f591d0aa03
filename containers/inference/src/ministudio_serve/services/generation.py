"""Prompts in, text out: tokenizing, limits, adapter choice, and the metrics and request log around every generation.

Every route (OpenAI, SageMaker, the seeds') goes through `prepare` (which refuses bad input before any response
starts, so a stream never begins with an error) and then `stream` or `complete`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ministudio_serve.engines.base import (
    AdapterHandle,
    Engine,
    GenerationChunk,
    GenerationRequest,
    Sampling,
    is_out_of_memory,
    out_of_memory,
)
from ministudio_serve.errors import ApiError
from ministudio_serve.metrics import Metrics
from ministudio_serve.middleware import current_user
from ministudio_serve.services.adapters import AdapterService
from ministudio_serve.services.request_log import LogEntry, RequestLog


@dataclass
class Job:
    request_id: str
    route: str
    model: str  # as the client named it: the base model or an adapter
    adapter: AdapterHandle | None
    prompt_ids: list[int]
    sampling: Sampling
    user: str | None = None


@dataclass
class Result:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float


class GenerationService:
    def __init__(
        self,
        engine: Engine,
        adapters: AdapterService,
        metrics: Metrics,
        request_log: RequestLog,
        model_name: str,
        default_max_tokens: int,
        context_length: int,
    ) -> None:
        self.engine = engine
        self.adapters = adapters
        self.metrics = metrics
        self.request_log = request_log
        self.model_name = model_name
        self.default_max_tokens = default_max_tokens
        self.context_length = min(context_length, engine.context_length)

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    def chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        try:
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # jinja raises for role orders a template forbids: that is the client's input
            raise ApiError(400, f"messages cannot be formatted for this model: {exc}", param="messages") from exc
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def text_ids(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        vocab = len(self.tokenizer)
        if any(t < 0 or t >= vocab for t in prompt):
            raise ApiError(400, f"prompt token ids must be in [0, {vocab})", param="prompt")
        return list(prompt)

    async def prepare(
        self,
        model: str,
        prompt_ids: list[int],
        route: str,
        request_id: str | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: tuple[str, ...] = (),
        user: str | None = None,
        min_tokens: int = 0,
    ) -> Job:
        if not prompt_ids:
            raise ApiError(400, "the prompt is empty", param="prompt")
        room = self.context_length - len(prompt_ids)
        if room < 1 or (max_tokens is not None and max_tokens > room):
            asked = len(prompt_ids) + (max_tokens or 1)
            raise ApiError(
                400,
                f"This model's maximum context length is {self.context_length} tokens. However, you requested "
                f"{asked} tokens ({len(prompt_ids)} in the prompt, {max_tokens or 1} for the completion). "
                "Please reduce the length of the prompt or the completion.",
                code="context_length_exceeded",
                param="max_tokens" if room >= 1 else "messages",
            )
        adapter = await self.adapters.resolve(model)
        sampling = Sampling(
            max_tokens=max_tokens or min(self.default_max_tokens, room),
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=stop,
            min_tokens=min_tokens,
        )
        return Job(request_id or uuid.uuid4().hex, route, model, adapter, prompt_ids, sampling, user)

    async def stream(self, job: Job) -> AsyncIterator[GenerationChunk]:
        started = time.perf_counter()
        first: float | None = None
        completion, finish, status = 0, None, "cancelled"
        request = GenerationRequest(job.request_id, job.prompt_ids, job.sampling, job.adapter)
        try:
            async for chunk in self.engine.generate(request):
                if first is None:
                    first = time.perf_counter() - started
                completion += len(chunk.token_ids)
                if chunk.finish_reason is not None:
                    finish, status = chunk.finish_reason, "success"
                    completion = chunk.completion_tokens or completion
                yield chunk
        except Exception as exc:
            status = type(exc).__name__
            if is_out_of_memory(exc):  # CUDA OOM: a 503 that says so, not a 500
                status = "out_of_memory"
                raise out_of_memory(exc) from exc
            raise
        finally:
            self._record(job, started, first, completion, finish, status)

    async def complete(self, job: Job) -> Result:
        started = time.perf_counter()
        parts: list[str] = []
        last: GenerationChunk | None = None
        async for chunk in self.stream(job):
            parts.append(chunk.text)
            last = chunk
        assert last is not None and last.finish_reason is not None
        return Result(
            "".join(parts),
            last.finish_reason,
            len(job.prompt_ids),
            last.completion_tokens,
            time.perf_counter() - started,
        )

    def _record(
        self, job: Job, started: float, ttft: float | None, completion: int, finish: str | None, status: str
    ) -> None:
        seconds = time.perf_counter() - started
        self.metrics.generation(job.model, ttft, seconds, len(job.prompt_ids), completion, status == "success")
        self.request_log.add(
            LogEntry(
                request_id=job.request_id,
                route=job.route,
                model=job.model,
                adapter=job.adapter.name if job.adapter else None,
                prompt_tokens=len(job.prompt_ids),
                completion_tokens=completion,
                latency_ms=round(seconds * 1000, 3),
                status=status,
                finish_reason=finish,
                user=job.user or current_user.get(),
            )
        )

    async def generate_text(
        self,
        model: str,
        prompt: str | list[dict[str, str]],
        route: str,
        request_id: str,
        *,
        max_prompt_tokens: int | None = None,
        **options: Any,
    ) -> Result:
        """One prompt (raw text, or chat messages) to text: what the seed routes need."""
        ids = self.chat_ids(prompt) if isinstance(prompt, list) else self.text_ids(prompt)
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            raise ApiError(
                400, f"prompt is {len(ids)} tokens; at most {max_prompt_tokens} are accepted", param="prompt"
            )
        return await self.complete(await self.prepare(model, ids, route, request_id, **options))
