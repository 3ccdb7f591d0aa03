"""OpenAI's CreateEmbeddingRequest: `input` is a string, a list of strings, a token array or a list of them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictInt, StrictStr

TokenArray = Annotated[list[StrictInt], Field(min_length=1)]


class EmbeddingRequest(BaseModel):
    input: StrictStr | list[StrictStr] | TokenArray | list[TokenArray]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(
        None, ge=1, description="only the model's own size: MiniLM is not Matryoshka-trained"
    )
    user: str | None = None

    def inputs(self) -> list[str] | list[list[int]]:
        """Always a list of inputs, each a string or a token array."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if all(isinstance(v, str) for v in value):
            return [str(v) for v in value]
        if all(isinstance(v, int) for v in value):
            return [[int(v) for v in value if isinstance(v, int)]]  # one token array
        return [list(v) for v in value if isinstance(v, list)]  # token arrays
