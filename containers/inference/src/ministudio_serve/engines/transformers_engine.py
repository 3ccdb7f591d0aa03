"""Continuous batching on a transformers causal LM (CPU or GPU), with batched multi-LoRA.

One thread owns the model. Each turn of its loop admits waiting requests (prefilled together, then merged into the
running batch's KV cache), runs one decode step for every running row, and drops rows that finished, so a short
answer never waits for a long one and a newcomer starts at the next step (FINDINGS.md: a static batch reaches 3.5x
at 8 rows, continuous batching is what gets past 4x). Chunks go back to each request's asyncio queue.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast

import torch

from ministudio_serve.engines import lora_layers
from ministudio_serve.engines.base import (
    AdapterHandle,
    ContextLengthExceeded,
    Engine,
    EngineStats,
    EngineUnavailable,
    GenerationChunk,
    GenerationRequest,
)
from ministudio_serve.engines.kv_batch import GrowableLayer, KVBatch, left_padded, new_cache
from ministudio_serve.engines.prefix_cache import PrefixCache, assemble
from ministudio_serve.engines.rows import Row, adapter_id, hold_eos
from ministudio_serve.engines.sampling import TextTracker, choose, make_generator

log = logging.getLogger(__name__)


class TransformersEngine(Engine):
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        name: str,
        max_batch_size: int = 8,
        batch_timeout_ms: float = 100.0,
        max_loras: int = 8,
        max_lora_rank: int = 16,
        prefix_cache_tokens: int = 2048,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.max_batch_size = max_batch_size
        self.batch_timeout = batch_timeout_ms / 1000.0
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048))
        self._device = next(model.parameters()).device
        self._targets = lora_layers.lora_targets(model)
        self._ctx = lora_layers.LoRAContext()
        self._slots = lora_layers.SlotTable(lora_layers.install(model, self._ctx, max_loras, max_lora_rank), max_loras)
        eos = model.generation_config.eos_token_id if model.generation_config else None
        self._eos = {int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None}
        if tokenizer.eos_token_id is not None:
            self._eos.add(int(tokenizer.eos_token_id))
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self._eos, default=0)
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._waiting: deque[Row] = deque()
        self._running: list[Row] = []
        self._admitting: list[Row] = []
        self._kv: KVBatch | None = None
        self._drops: set[int] = set()
        # 8-token blocks: the chat template and default system prompt of SmolLM2 share 24 tokens across requests.
        self._prefix = PrefixCache(block=8 if prefix_cache_tokens else 0, capacity_tokens=prefix_cache_tokens)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def device(self) -> str:
        return str(self._device)

    async def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="engine-loop", daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        self._inbox.put(("wake", None))
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
            self._thread = None

    def lora_targets(self) -> dict[str, tuple[int, int]]:
        return dict(self._targets)

    async def add_adapter(self, adapter: AdapterHandle) -> None:
        # Weights travel with each request and take a slot when the request is admitted: nothing to do up front.
        if adapter.weights is None:
            raise EngineUnavailable(f"adapter {adapter.name!r} has no weights loaded")

    async def remove_adapter(self, adapter: AdapterHandle) -> None:
        self._inbox.put(("drop", adapter.uid))

    def stats(self) -> EngineStats:
        return EngineStats(len(self._running), len(self._waiting) + self._inbox.qsize(), len(self._slots.by_uid))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if self._thread is None or self._stopping.is_set():
            raise EngineUnavailable("the engine is not running")
        total = len(request.prompt_ids) + request.sampling.max_tokens
        if total > self.context_length:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.context_length} tokens. However, you requested "
                f"{total} tokens ({len(request.prompt_ids)} in the prompt, {request.sampling.max_tokens} for the "
                "completion). Please reduce the prompt or max_tokens."
            )
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[GenerationChunk | BaseException] = asyncio.Queue()

        def emit(item: GenerationChunk | BaseException) -> None:
            loop.call_soon_threadsafe(chunks.put_nowait, item)

        row = Row(request, emit, TextTracker(self.tokenizer, request.sampling.stop), make_generator(request.sampling))
        self._inbox.put(("add", row))
        finished = False
        try:
            while not finished:
                item = await chunks.get()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finish_reason is not None
                yield item
        finally:
            if not finished:  # the client went away: free the row at the next step
                self._inbox.put(("abort", row))

    # --- the engine thread -------------------------------------------------------------------------------------

    def _loop(self) -> None:
        with torch.inference_mode():
            while not self._stopping.is_set():
                idle = not self._running and not self._waiting
                self._drain(block=idle)
                if idle and self._waiting and self.batch_timeout > 0:
                    self._gather()
                try:
                    self._admit()
                    if self._running:
                        self._decode()
                except Exception as exc:  # a failed step must not take the server down: fail its rows only
                    log.exception("engine step failed")
                    for row in self._running + self._admitting:
                        row.emit(EngineUnavailable(f"generation failed: {type(exc).__name__}"))
                    self._running, self._admitting, self._kv = [], [], None

    def _drain(self, block: bool, timeout: float = 0.5) -> None:
        try:
            item = self._inbox.get(timeout=timeout) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            self._command(*item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _gather(self) -> None:
        """Idle and a request arrived: wait up to batch_timeout for others so they prefill together."""
        deadline = time.monotonic() + self.batch_timeout
        while len(self._waiting) < self.max_batch_size and not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._drain(block=True, timeout=left)

    def _command(self, kind: str, arg: Any) -> None:
        if kind == "add":
            self._waiting.append(arg)
        elif kind == "abort":
            arg.done = True
            if arg in self._waiting:
                self._waiting.remove(arg)
        elif kind == "drop":
            self._drops.add(arg)
            self._prefix.forget(arg)
        busy = {row.slot for row in self._running}
        for uid in list(self._drops):
            if self._slots.drop(uid, busy):
                self._drops.discard(uid)
                self._ctx.invalidate()

    def _admit(self) -> None:
        room = self.max_batch_size - len(self._running)
        busy = {row.slot for row in self._running}
        batch: list[Row] = []
        for row in list(self._waiting):
            if len(batch) >= room:
                break
            adapter = row.request.adapter
            if adapter is not None:
                slot = self._slots.slot_for(adapter.uid, adapter.weights, busy)
                if slot is None:  # every slot holds an adapter a running row needs: wait for one to finish
                    continue
                if self._slots.changed:
                    self._slots.changed = False
                    self._ctx.invalidate()
                row.slot = slot
                busy.add(slot)
            self._waiting.remove(row)
            batch.append(row)
        if batch:
            self._admitting = batch  # out of the queue, not yet running: a failed prefill must still answer them
            self._prefill(batch)
            self._admitting = []

    def _prefill(self, batch: list[Row]) -> None:
        hits = [self._prefix.lookup(adapter_id(row), row.request.prompt_ids) for row in batch]
        suffixes = [row.request.prompt_ids[hit[0] if hit else 0 :] for row, hit in zip(batch, hits, strict=True)]
        ids, mask = left_padded(suffixes, self._pad, self._device)
        cache = new_cache(self.model.config)
        if any(hits):  # start from the cached prefixes: only the rest of each prompt is computed
            prefix_mask, layers = assemble(hits, self._device)
            for layer, (keys, values) in zip(cache.layers, layers, strict=True):
                cast(GrowableLayer, layer).set(keys, values)
            mask = torch.cat([prefix_mask, mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, mask.shape[1] - ids.shape[1] :]
        logits = self._forward(batch, ids, mask, positions, cache)
        for row in batch:
            row.length = len(row.request.prompt_ids)
        layers_kv = [cast(GrowableLayer, layer).kv() for layer in cache.layers]
        self._prefix.store_batch([adapter_id(r) for r in batch], [r.request.prompt_ids for r in batch], mask, layers_kv)
        kv = KVBatch(cache, mask)
        if self._kv is None:
            self._kv = kv
        else:
            self._kv.merge(kv)
        self._running.extend(batch)
        self._accept(batch, logits)

    def _decode(self) -> None:
        assert self._kv is not None
        rows = self._running
        ids = torch.tensor([[row.next_token] for row in rows], dtype=torch.long, device=self._device)
        positions = torch.tensor([[row.length] for row in rows], dtype=torch.long, device=self._device)
        mask = self._kv.extend_mask()
        logits = self._forward(rows, ids, mask, positions, self._kv.cache)
        for row in rows:
            row.length += 1
        self._accept(rows, logits)

    def _forward(
        self, rows: list[Row], ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any
    ) -> Any:
        self._ctx.set_rows([row.slot for row in rows], self._slots.ranks, self._device)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :]

    def _accept(self, rows: list[Row], logits: torch.Tensor) -> None:
        hold_eos(rows, logits, self._eos)
        tokens = choose(logits, [r.request.sampling for r in rows], [r.generator for r in rows])
        for row, token in zip(rows, tokens, strict=True):
            if not row.done:
                row.step(token, self._eos, self.context_length)
        if any(row.done for row in self._running):
            keep = [i for i, row in enumerate(self._running) if not row.done]
            self._running = [self._running[i] for i in keep]
            if not keep:
                self._kv = None
            elif self._kv is not None:
                self._kv.keep(keep)
