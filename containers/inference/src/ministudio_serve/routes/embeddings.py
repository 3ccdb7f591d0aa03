"""OpenAI-compatible `POST /v1/embeddings` on the task registry's embedder (all-MiniLM-L6-v2 by default)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from ministudio_serve.deps import TasksDep
from ministudio_serve.errors import ApiError, ModelNotFound
from ministudio_serve.schemas.embeddings import EmbeddingRequest
from ministudio_serve.services import embeddings

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/embeddings")
async def create_embeddings(body: EmbeddingRequest, tasks: TasksDep) -> dict[str, Any]:
    embedder = tasks.embedder
    if body.model not in embedder.aliases:
        raise ModelNotFound(body.model)
    inputs = body.inputs()
    if not 1 <= len(inputs) <= embeddings.MAX_INPUTS:
        raise ApiError(400, f"input must hold 1 to {embeddings.MAX_INPUTS} items", param="input")
    started, ok = time.perf_counter(), False
    try:
        await embedder.ensure()
        if body.dimensions is not None and body.dimensions != embedder.dimensions:
            raise ApiError(400, f"{embedder.name} has {embedder.dimensions} dimensions only", param="dimensions")
        vectors, tokens = await embedder.embed(inputs)
        ok = True
    finally:
        tasks.metrics.task_request(embedder.name, embedder.version, time.perf_counter() - started, ok)
    return embeddings.response(embedder.name, vectors, tokens, body.encoding_format)
