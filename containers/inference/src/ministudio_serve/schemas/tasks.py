"""Seed 003's per-model `parameters`, checked before anything runs: an unknown name or a bad value is a 400.

Lengths count tokens the model generates (the prompt is not included), for the LLM and the transformers models alike.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

Int = Annotated[int, Field(strict=True)]  # `true` or "50" is a client bug, not 1 or 50


class TaskParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SummarizerParams(TaskParams):
    # bart-large-cnn's own max_length; its min_length (56) would make short inputs ramble, so none by default.
    max_length: Int = Field(142, ge=1, le=1024)
    min_length: Int = Field(0, ge=0, le=1024)
    temperature: float = Field(0.0, ge=0.0, le=2.0)  # greedy by default: the same text gives the same summary
    seed: Int | None = None

    @model_validator(mode="after")
    def _lengths(self) -> SummarizerParams:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length ({self.min_length}) must not exceed max_length ({self.max_length})")
        return self


class GeneratorParams(TaskParams):
    max_length: Int = Field(50, ge=1, le=2048, validation_alias=AliasChoices("max_length", "max_tokens"))
    min_length: Int = Field(0, ge=0, le=2048)
    num_return_sequences: Int = Field(1, ge=1, le=8)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    seed: Int | None = None
    stop: list[str] = Field(default_factory=list, max_length=4)

    @model_validator(mode="after")
    def _lengths(self) -> GeneratorParams:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length ({self.min_length}) must not exceed max_length ({self.max_length})")
        if self.num_return_sequences > 1 and self.temperature == 0:
            raise ValueError("num_return_sequences > 1 needs temperature > 0: greedy decoding has one answer")
        return self


class SentimentParams(TaskParams):
    """The classifier takes no options; anything sent is refused rather than silently ignored."""
