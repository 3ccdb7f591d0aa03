"""Seed 002's generation routes: POST /predict and /predict/batch (InferenceRequest → InferenceResponse)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from fastapi import APIRouter

from ministudio_serve.deps import GenerationDep, RequestIdDep, StateDep
from ministudio_serve.schemas.seed import (
    BatchInferenceRequest,
    BatchInferenceResponse,
    InferenceRequest,
    InferenceResponse,
)
from ministudio_serve.services.generation import GenerationService
from ministudio_serve.state import ServerState

router = APIRouter(tags=["seed-002"])
MAX_PROMPT_TOKENS = 2048  # the seed's "prompt: string (1-2048 tokens)"


async def _one(
    service: GenerationService,
    state: ServerState,
    rid: str,
    route: str,
    prompt: str,
    model: str | None,
    max_length: int,
    temperature: float,
    top_p: float,
    stop: list[str] | None,
    seed: int | None = None,
) -> InferenceResponse:
    name = model or state.settings.model_name
    result = await service.generate_text(
        name,
        prompt,
        route,
        rid,
        max_prompt_tokens=MAX_PROMPT_TOKENS,
        max_tokens=max_length,
        temperature=temperature,
        top_p=top_p,
        stop=tuple(stop or ()),
        seed=seed,
    )
    return InferenceResponse(
        generated_text=result.text,
        prompt=prompt,
        tokens_generated=result.completion_tokens,
        processing_time=round(result.seconds, 4),
        model_name=name,
        model_version=state.settings.model_version,
        timestamp=datetime.now(UTC),
    )


@router.post("/predict", response_model=InferenceResponse)
async def predict(
    body: InferenceRequest, service: GenerationDep, state: StateDep, rid: RequestIdDep
) -> InferenceResponse:
    return await _one(
        service,
        state,
        rid,
        "/predict",
        body.prompt,
        body.model,
        body.max_length,
        body.temperature,
        body.top_p,
        body.stop_tokens,
        body.seed,
    )


@router.post("/predict/batch", response_model=BatchInferenceResponse)
async def predict_batch(
    body: BatchInferenceRequest, service: GenerationDep, state: StateDep, rid: RequestIdDep
) -> BatchInferenceResponse:
    started = time.perf_counter()
    # Submitted together, the prompts share the engine's running batch.
    results = await asyncio.gather(
        *(
            _one(
                service,
                state,
                f"{rid}-{i}",
                "/predict/batch",
                prompt,
                body.model,
                body.max_length,
                body.temperature,
                body.top_p,
                body.stop_tokens,
            )
            for i, prompt in enumerate(body.prompts)
        )
    )
    return BatchInferenceResponse(
        results=list(results), total_processing_time=round(time.perf_counter() - started, 4), batch_size=len(results)
    )
