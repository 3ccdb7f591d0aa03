"""OpenAI-compatible generation and model listing: /v1/chat/completions, /v1/completions, /v1/models."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from ministudio_serve.deps import GenerationDep, RequestIdDep, StateDep
from ministudio_serve.schemas.openai import ChatCompletionRequest, CompletionRequest
from ministudio_serve.services import openai_format as fmt

router = APIRouter(prefix="/v1", tags=["openai"])
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(body: Any) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=_SSE_HEADERS)


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, service: GenerationDep, rid: RequestIdDep) -> Any:
    job = await fmt.chat_job(service, body, "/v1/chat/completions", rid)
    if body.stream:
        include = bool(body.stream_options and body.stream_options.include_usage)
        return sse(fmt.chat_stream(service, job, include))
    return fmt.chat_response(body.model, await service.complete(job))


@router.post("/completions", response_model=None)
async def completions(body: CompletionRequest, service: GenerationDep, rid: RequestIdDep) -> Any:
    jobs = await fmt.completion_jobs(service, body, "/v1/completions", rid)
    if body.stream:
        include = bool(body.stream_options and body.stream_options.include_usage)
        return sse(fmt.completion_stream(service, jobs[0], include))
    results = await asyncio.gather(*(service.complete(job) for job in jobs))
    return fmt.completion_response(body.model, list(results))


@router.get("/models")
async def list_models(state: StateDep) -> dict[str, Any]:
    created = int(state.started_at)
    base = state.settings.model_name
    adapters = state.adapters.names() if state.adapters else []
    cards = [fmt.model_card(base, created)] + [fmt.model_card(name, created, parent=base) for name in adapters]
    return {"object": "list", "data": cards}
