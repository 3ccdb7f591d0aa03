"""Request and response bodies of seeds 002 (`/predict`), 003 (`/infer`) and 004 (`/predict/{model}/{version}`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class InferenceRequest(BaseModel):
    prompt: str = Field(min_length=1, description="1-2048 tokens")
    max_length: int = Field(100, ge=1, le=2048)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, ge=0.0, le=1.0)
    stop_tokens: list[str] | None = None
    model: str | None = Field(None, description="an adapter name or ft: id; the base model when empty")
    seed: int | None = None


class InferenceResponse(BaseModel):
    generated_text: str
    prompt: str
    tokens_generated: int
    processing_time: float
    model_name: str
    model_version: str
    timestamp: datetime


class BatchInferenceRequest(BaseModel):
    prompts: list[str] = Field(min_length=1, max_length=64)
    max_length: int = Field(100, ge=1, le=2048)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, ge=0.0, le=1.0)
    stop_tokens: list[str] | None = None
    model: str | None = None


class BatchInferenceResponse(BaseModel):
    results: list[InferenceResponse]
    total_processing_time: float
    batch_size: int


class InferRequest(BaseModel):
    text: str = Field(min_length=1)
    model: str | None = Field(
        None, description="summarizer, sentiment, generator or an adapter; DEFAULT_MODEL if unset"
    )
    version: str | None = Field(None, description="v1; the model's latest when unset")
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferResponse(BaseModel):
    success: bool
    result: str | list[str] | dict[str, Any]  # text; texts (num_return_sequences > 1); sentiment's label and scores
    model_used: str
    latency_ms: float
    request_id: str
    timestamp: str
    metadata: dict[str, Any]


class InferBatchRequest(BaseModel):
    requests: list[InferRequest] = Field(min_length=1, max_length=64)


class PredictRequest(BaseModel):
    """Seed 004's body: `input_data` holds the model inputs; for the LLM that is a prompt and sampling options."""

    input_data: dict[str, Any]
