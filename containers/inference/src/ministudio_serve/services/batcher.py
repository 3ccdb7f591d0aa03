"""Dynamic batching for the task models that are not the LLM (its engine batches continuously on its own).

Items from concurrent requests queue up; a batch runs when MAX_BATCH_SIZE items wait or BATCH_TIMEOUT_MS after the
first of them arrived, whichever comes first, so a burst shares one forward pass and a lone request waits at most the
timeout. One batch runs at a time, in a worker thread: the model is never used from two threads at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from ministudio_serve.engines.base import EngineUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    def __init__(self, name: str, run: Callable[[list[T]], Sequence[R]], max_size: int, timeout_ms: float) -> None:
        self.name = name
        self.run = run
        self.max_size = max_size
        self.timeout = timeout_ms / 1000.0
        self.batches = 0  # batches run so far, for tests and the benchmark
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def submit(self, item: T) -> R:
        return (await self.submit_many([item]))[0]

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        if self._closed:
            raise EngineUnavailable(f"model {self.name} is shut down")
        if self._queue is None or self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._loop(self._queue), name=f"batcher-{self.name}")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = []
        for item in items:
            future: asyncio.Future[R] = loop.create_future()
            self._queue.put_nowait((item, future))
            futures.append(future)
        return list(await asyncio.gather(*futures))

    async def close(self) -> None:
        """Stop taking items; what was queued but not started fails with 503 instead of hanging."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._queue is not None and not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(EngineUnavailable(f"model {self.name} is shut down"))

    async def _loop(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.timeout
            while len(batch) < self.max_size:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), left))
                except TimeoutError:
                    break
            live = [(item, future) for item, future in batch if not future.done()]
            if live:
                await self._run(live)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await asyncio.to_thread(self.run, [item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name} returned {len(results)} results for {len(batch)} items")
        except Exception as exc:  # the batch's requests fail; the loop (and the server) go on
            log.exception("batch of %d on %s failed", len(batch), self.name)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
