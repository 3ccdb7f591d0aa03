"""The GPU engine: vLLM's AsyncLLMEngine in-process, with LoRA enabled and a LoRARequest per call.

vLLM does its own continuous batching, paged KV cache and batched multi-LoRA (Punica kernels); this class only
translates. vLLM is imported inside the methods: the package is in the GPU image only (FINDINGS.md), and the rest of
the server must import without it. Written against vLLM >= 0.8 (AsyncEngineArgs, AsyncLLMEngine.from_engine_args,
SamplingParams, LoRARequest, add_lora/remove_lora, abort).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ministudio_serve.engines.base import (
    AdapterHandle,
    Engine,
    EngineStats,
    EngineUnavailable,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
)
from ministudio_serve.settings import ServeSettings

log = logging.getLogger(__name__)


def targets_from_config(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """The adaptable Linear layers of a Llama-family model, by peft's names, from config.json alone.

    The adapter checks need each module's (in, out) sizes; vLLM keeps its model in worker processes, so they are
    derived from the config the same way the transformers modules are built.
    """
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    inter = int(config["intermediate_size"])
    shapes = {
        "self_attn.q_proj": (hidden, heads * head_dim),
        "self_attn.k_proj": (hidden, kv_heads * head_dim),
        "self_attn.v_proj": (hidden, kv_heads * head_dim),
        "self_attn.o_proj": (heads * head_dim, hidden),
        "mlp.gate_proj": (hidden, inter),
        "mlp.up_proj": (hidden, inter),
        "mlp.down_proj": (inter, hidden),
    }
    return {
        f"model.layers.{i}.{name}": shape
        for i in range(int(config["num_hidden_layers"]))
        for name, shape in shapes.items()
    }


class VLLMEngine(Engine):
    def __init__(
        self, engine: Any, tokenizer: Any, name: str, context_length: int, targets: dict[str, tuple[int, int]]
    ):
        self.engine = engine
        self.tokenizer = tokenizer
        self.name = name
        self.context_length = context_length
        self._targets = targets
        self._waiting: set[str] = set()
        self._running: set[str] = set()
        self._adapters: set[int] = set()

    @classmethod
    def load(cls, model_dir: Path, settings: ServeSettings) -> VLLMEngine:
        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        config = json.loads((model_dir / "config.json").read_text())
        context = settings.max_model_len or int(config.get("max_position_embeddings", 4096))
        args = AsyncEngineArgs(
            model=str(model_dir),
            tokenizer=str(model_dir),
            served_model_name=[settings.model_name],
            dtype="auto" if settings.dtype == "auto" else settings.dtype,
            max_model_len=context,
            max_num_seqs=settings.max_batch_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            enable_lora=True,
            max_loras=settings.max_loras,
            max_lora_rank=settings.max_lora_rank,
            max_cpu_loras=max(settings.max_loras, 2 * settings.max_loras),
        )
        engine = AsyncLLMEngine.from_engine_args(args)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        return cls(engine, tokenizer, settings.model_name, context, targets_from_config(config))

    @property
    def device(self) -> str:
        return "cuda"

    async def start(self) -> None:
        # from_engine_args starts vLLM's background loop; nothing more to do.
        return None

    async def stop(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)
        if callable(shutdown):
            shutdown()

    def lora_targets(self) -> dict[str, tuple[int, int]]:
        return dict(self._targets)

    def _lora(self, adapter: AdapterHandle) -> Any:
        from vllm.lora.request import LoRARequest

        return LoRARequest(adapter.name, adapter.uid, adapter.path)

    async def add_adapter(self, adapter: AdapterHandle) -> None:
        # Loading now makes a bad adapter fail its load call, not the first request that uses it.
        await self.engine.add_lora(self._lora(adapter))
        self._adapters.add(adapter.uid)

    async def remove_adapter(self, adapter: AdapterHandle) -> None:
        self._adapters.discard(adapter.uid)
        await self.engine.remove_lora(adapter.uid)

    def stats(self) -> EngineStats:
        return EngineStats(len(self._running), len(self._waiting), len(self._adapters))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        from vllm import SamplingParams

        s = request.sampling
        params = SamplingParams(
            n=1,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            seed=s.seed,
            stop=list(s.stop),
            ignore_eos=s.ignore_eos,
            min_tokens=s.min_tokens,
        )
        lora = self._lora(request.adapter) if request.adapter is not None else None
        prompt = {"prompt_token_ids": request.prompt_ids}
        # A client may reuse its X-Request-ID; vLLM needs ids unique among requests in flight.
        rid = f"{request.request_id}-{uuid.uuid4().hex[:12]}"
        self._waiting.add(rid)
        text_sent, ids_sent, finished = 0, 0, False
        try:
            async for output in self.engine.generate(prompt, params, rid, lora_request=lora):
                self._waiting.discard(rid)
                self._running.add(rid)
                # Outputs are cumulative (the default output kind): send what is new since the last one.
                out = output.outputs[0]
                chunk = GenerationChunk(text=out.text[text_sent:], token_ids=list(out.token_ids[ids_sent:]))
                text_sent, ids_sent = len(out.text), len(out.token_ids)
                if output.finished:
                    finished = True
                    reason: FinishReason = "length" if out.finish_reason == "length" else "stop"
                    chunk.finish_reason = reason
                    chunk.prompt_tokens = len(request.prompt_ids)
                    chunk.completion_tokens = len(out.token_ids)
                yield chunk
            if not finished:
                raise EngineUnavailable("vLLM ended the request without finishing it")
        finally:
            self._waiting.discard(rid)
            self._running.discard(rid)
            if not finished:
                await self.engine.abort(rid)
