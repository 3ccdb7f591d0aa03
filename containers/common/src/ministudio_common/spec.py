"""The training job spec: the one model the control plane builds and the trainer reads (`--spec-json`, a file,
`$MINISTUDIO_JOB_SPEC`, or SageMaker's hyperparameters).

This module imports pydantic and the standard library only: the Lambda bundle vendors it beside `functions`
(infra/cdk/bundle.py), where neither torch nor transformers exist. JSON-able, no secrets.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_SEED = 42
MAX_SEED = 2**31 - 1  # what OpenAI's API accepts, and what the control plane checks at job creation


class TrainingSpec(BaseModel):
    """Everything `ministudio-train` needs. Unknown fields are refused, so a misspelt one cannot be ignored."""

    # Numbers are accepted for strings: SageMaker hands values back JSON-decoded, so a suffix "123" may come as 123.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    job_id: str = Field(min_length=1)
    tenant: str = ""  # empty for a trainer run by hand: it then names no fine-tuned model
    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)  # s3://bucket/key or a local path
    output: str = Field(min_length=1)  # s3://bucket/artifacts/{tenant}/{job_id}/ or a local directory
    validation_file: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)  # values are checked by the trainer (hyper.py)
    seed: int = Field(DEFAULT_SEED, ge=0, le=MAX_SEED)
    suffix: str | None = None

    @field_validator("validation_file", "suffix", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def fine_tuned_model(self) -> str | None:
        if not self.tenant or not self.job_id:
            return None
        return f"ft:{self.model}:{self.tenant}:{self.suffix or ''}:{self.job_id}"


FIELDS: tuple[str, ...] = tuple(TrainingSpec.model_fields)
