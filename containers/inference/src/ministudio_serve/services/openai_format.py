"""OpenAI response bodies and SSE streams, shaped to validate against OpenAI's own OpenAPI schemas."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypedDict

from ministudio_serve.schemas.openai import ChatCompletionRequest, CompletionRequest
from ministudio_serve.services.generation import GenerationService, Job, Result


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _head(prefix: str, kind: str, model: str) -> dict[str, Any]:
    """What every response and chunk of one answer starts with: its id, object type, creation time and model."""
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model}


def chat_response(model: str, result: Result) -> dict[str, Any]:
    return {
        **_head("chatcmpl", "chat.completion", model),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text, "refusal": None},
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": usage(result.prompt_tokens, result.completion_tokens),
    }


def completion_response(model: str, results: list[Result]) -> dict[str, Any]:
    return {
        **_head("cmpl", "text_completion", model),
        "choices": [
            {"index": i, "text": r.text, "logprobs": None, "finish_reason": r.finish_reason}
            for i, r in enumerate(results)
        ],
        "usage": usage(sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results)),
    }


def model_card(model_id: str, created: int, parent: str | None = None) -> dict[str, Any]:
    card: dict[str, Any] = {"id": model_id, "object": "model", "created": created, "owned_by": "ministudio"}
    if parent:  # vLLM lists adapters with their base as parent/root
        card["parent"] = parent
        card["root"] = parent
    return card


def _sse(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, separators=(',', ':'))}\n\n"


async def chat_stream(service: GenerationService, job: Job, include_usage: bool) -> AsyncIterator[str]:
    base = _head("chatcmpl", "chat.completion.chunk", job.model)
    yield _sse(
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    )
    completion = 0
    async for chunk in service.stream(job):
        if chunk.text:
            yield _sse({**base, "choices": [{"index": 0, "delta": {"content": chunk.text}, "finish_reason": None}]})
        if chunk.finish_reason is not None:
            completion = chunk.completion_tokens
            yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": chunk.finish_reason}]})
    if include_usage:
        yield _sse({**base, "choices": [], "usage": usage(len(job.prompt_ids), completion)})
    yield "data: [DONE]\n\n"


async def completion_stream(service: GenerationService, job: Job, include_usage: bool) -> AsyncIterator[str]:
    base = _head("cmpl", "text_completion", job.model)
    completion = 0
    async for chunk in service.stream(job):
        if chunk.text or chunk.finish_reason is not None:
            choice = {"index": 0, "text": chunk.text, "logprobs": None, "finish_reason": chunk.finish_reason}
            yield _sse({**base, "choices": [choice]})
        if chunk.finish_reason is not None:
            completion = chunk.completion_tokens
    if include_usage:
        yield _sse({**base, "choices": [], "usage": usage(len(job.prompt_ids), completion)})
    yield "data: [DONE]\n\n"


class Sampling(TypedDict):
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    user: str | None


def _sampling(body: ChatCompletionRequest | CompletionRequest) -> Sampling:
    """The request's sampling options for `GenerationService.prepare`, OpenAI's defaults where it gives none."""
    return {
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "seed": body.seed,
        "stop": body.stops(),
        "user": body.user,
    }


async def chat_job(service: GenerationService, body: ChatCompletionRequest, route: str, request_id: str) -> Job:
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    return await service.prepare(
        body.model,
        service.chat_ids(messages),
        route,
        request_id,
        max_tokens=body.limit(),
        **_sampling(body),
    )


async def completion_jobs(
    service: GenerationService, body: CompletionRequest, route: str, request_id: str
) -> list[Job]:
    jobs = []
    for i, prompt in enumerate(body.prompts()):
        jobs.append(
            await service.prepare(
                body.model,
                service.text_ids(prompt),
                route,
                request_id if i == 0 else f"{request_id}-{i}",
                max_tokens=body.max_tokens or 16,  # OpenAI's default for /v1/completions
                **_sampling(body),
            )
        )
    return jobs
