"""The registry behind seed 003's `/models`, `/infer` and `/infer/batch`: which model and version answers a name,
parameters checked per model, the seed's response shape, and the per-model metrics (requests, failures, latency,
load time) around every call.

A name that is not a task model is tried as the LLM itself or one of its LoRA adapters (generator parameters): the
adapter service answers 404 for a name it does not know.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ministudio_serve.engines.base import EngineError
from ministudio_serve.errors import ApiError
from ministudio_serve.metrics import Metrics
from ministudio_serve.schemas.seed import InferRequest
from ministudio_serve.services.embeddings import Embedder
from ministudio_serve.services.generation import GenerationService
from ministudio_serve.services.hub_models import HubGenerator, HubModel, HubSentiment, HubSummarizer
from ministudio_serve.services.task_models import (
    VERSION,
    LLMGenerator,
    LLMSummarizer,
    LoadOnce,
    TaskModel,
    VaderSentiment,
)
from ministudio_serve.settings import ServeSettings

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TaskRouter:
    def __init__(
        self,
        settings: ServeSettings,
        metrics: Metrics,
        service: Callable[[], GenerationService],
        llm_load_seconds: Callable[[], float | None],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.service = service
        self.llm_load_seconds = llm_load_seconds
        s = settings
        batching = (s.max_batch_size, s.batch_timeout_ms)
        llm = f"{s.model_name} (instruction prompt)"
        summarizer: TaskModel = (
            LLMSummarizer(service, llm, llm_load_seconds)
            if s.summarizer_model == "builtin"
            else HubSummarizer(s.summarizer_model, s.device, *batching)
        )
        sentiment: TaskModel = (
            VaderSentiment(*batching)
            if s.sentiment_model == "builtin"
            else HubSentiment(s.sentiment_model, s.device, *batching)
        )
        generator: TaskModel = (
            LLMGenerator(service, s.model_name, llm_load_seconds)
            if s.generator_model == "builtin"
            else HubGenerator(s.generator_model, s.device, *batching)
        )
        self.models: dict[str, dict[str, TaskModel]] = {
            m.name: {m.version: m} for m in (summarizer, sentiment, generator)
        }
        self.embedder = Embedder(s.embedding_model, s.device, *batching)
        self.gate = asyncio.Event()  # set once the LLM has loaded (or failed): then task models may load
        for model in self.all():
            model.gate = self.gate
            self._watch(model)
        for entry in s.task_model_versions:  # `summarizer:v2=/models/bart-v2`: more versions from folders
            self.register(*parse_version_entry(entry))

    def register(self, name: str, version: str, path: str) -> TaskModel:
        """Another version of a task model, loaded from a folder (or hub id) with transformers; the newest version
        answers when a request names none. Loads at startup (preload) or on its first request."""
        kinds: dict[str, type[HubModel]] = {
            "summarizer": HubSummarizer,
            "sentiment": HubSentiment,
            "generator": HubGenerator,
        }
        if name not in kinds:
            raise ApiError(400, f"model {name!r} cannot take versions (task models: {', '.join(kinds)})", param="name")
        if not VERSION_PATTERN.fullmatch(version):
            raise ApiError(400, f"version {version!r} must look like v2", param="version")
        if version in self.models[name]:
            raise ApiError(409, f"model {name} already has version {version}", code="version_exists")
        s = self.settings
        model = kinds[name](path, s.device, s.max_batch_size, s.batch_timeout_ms)
        model.version = version
        model.gate = self.gate
        self.models[name][version] = model
        self._watch(model)
        log.info("task model %s:%s registered from %s", name, version, path)
        return model

    def _watch(self, model: LoadOnce) -> None:
        self.metrics.watch_task_model(model.name, model.version, lambda: model.loaded, lambda: model.load_seconds)

    def all(self) -> list[LoadOnce]:
        return [m for versions in self.models.values() for m in versions.values()] + [self.embedder]

    async def start(self, llm_load: asyncio.Task[None] | None, preload: bool) -> None:
        """Startup, in the background: after the LLM's load, each task model once when `preload` is set."""
        if llm_load is not None:
            await asyncio.wait([llm_load])
        self.gate.set()
        if preload:
            await self.load_all()

    async def load_all(self) -> None:
        """Startup: each model once, one after another (they share the CPU); a failure is logged and kept."""
        for model in self.all():
            if isinstance(model, LLMSummarizer | LLMGenerator):
                continue  # the engine loads the LLM; its load time is the LLM's
            with contextlib.suppress(ApiError):  # logged, and each request for it answers 503 with the reason
                await model.ensure()

    async def close(self) -> None:
        self.gate.set()  # requests still waiting for it see the models closed and get their 503
        await asyncio.gather(*(model.close() for model in self.all()))

    def resolve(self, name: str | None, version: str | None) -> TaskModel:
        name = name or self.settings.default_task_model
        versions = self.models.get(name)
        if versions is None:  # the LLM by its own id, or an adapter: the generator's parameters, one version
            if version not in (None, VERSION):
                raise ApiError(
                    404, f"model {name} has no version {version!r} (available: {VERSION})", "model_not_found"
                )
            return LLMGenerator(self.service, self.settings.model_name, self.llm_load_seconds, model=name)
        chosen = versions.get(version or max(versions, key=version_key))
        if chosen is None:
            raise ApiError(
                404,
                f"model {name} has no version {version!r} (available: {', '.join(sorted(versions, key=version_key))})",
                "model_not_found",
            )
        return chosen

    def listing(self) -> list[dict[str, Any]]:
        entries = []
        for name, versions in self.models.items():
            latest = max(versions, key=version_key)
            for version, model in sorted(versions.items(), key=lambda kv: version_key(kv[0])):
                entries.append(
                    {
                        "name": name,
                        "version": version,
                        "versions": sorted(versions, key=version_key),
                        "latest": version == latest,
                        "model_type": model.model_type,
                        "backing_model": model.backing,
                        "parameters": sorted(model.params.model_fields),
                        "loaded": model.loaded,
                        "load_time_ms": _ms(model.load_seconds),
                        "default": name == self.settings.default_task_model,
                    }
                )
        e = self.embedder
        entries.append(
            {
                "name": e.name,
                "version": e.version,
                "versions": [e.version],
                "latest": True,
                "model_type": "embedding",
                "backing_model": e.backing,
                "parameters": ["encoding_format", "dimensions"],
                "loaded": e.loaded,
                "load_time_ms": _ms(e.load_seconds),
                "default": False,
                "endpoint": "/v1/embeddings",
            }
        )
        return entries

    async def infer(self, item: InferRequest, request_id: str, route: str) -> dict[str, Any]:
        started = time.perf_counter()
        name = item.model or self.settings.default_task_model
        try:
            model = self.resolve(name, item.version)
        except ApiError:
            if name in self.models:  # a known model asked at a version it lacks: a failure of that model
                self.metrics.task_request(name, "unknown", time.perf_counter() - started, False)
            raise
        adapter = isinstance(model, LLMGenerator) and model.model is not None
        ok = False
        try:
            params = model.parse(item.parameters)
            output = await model.run(item.text, params, request_id, route)
            ok = True
        finally:
            if not adapter:  # adapters are counted by the generation metrics, under their own names
                self.metrics.task_request(name, model.version, time.perf_counter() - started, ok)
        return {
            "success": True,
            "result": output.result,
            "model_used": f"{name}:{model.version}",
            "latency_ms": _ms(time.perf_counter() - started),
            "request_id": request_id,
            "timestamp": now(),
            "metadata": {"model_type": "adapter" if adapter else model.model_type, "backing_model": model.backing}
            | output.metadata,
        }

    async def infer_batch(self, items: list[InferRequest], request_id: str) -> list[dict[str, Any]]:
        """Every item runs concurrently, so same-model items share batches; a bad item reports its own error."""

        async def one(i: int, item: InferRequest) -> dict[str, Any]:
            rid = f"{request_id}-{i}"
            try:
                return await self.infer(item, rid, "/infer/batch")
            except ApiError as exc:
                return self._failure(item, rid, exc.status, exc.message, exc.code)
            except EngineError as exc:
                return self._failure(item, rid, exc.status, str(exc), exc.code)
            except Exception:  # one item's failure must not lose the others' answers
                log.exception("batch item %s failed", rid)
                return self._failure(item, rid, 500, "The server had an error processing this item.", None)

        return list(await asyncio.gather(*(one(i, item) for i, item in enumerate(items))))

    def _failure(self, item: InferRequest, rid: str, status: int, message: str, code: str | None) -> dict[str, Any]:
        return {
            "success": False,
            "result": None,
            "model_used": f"{item.model or self.settings.default_task_model}:{item.version or VERSION}",
            "error": message,
            "code": code,
            "status": status,
            "request_id": rid,
            "timestamp": now(),
        }


VERSION_PATTERN = re.compile(r"v[0-9]{1,6}")


def version_key(version: str) -> tuple[int, str]:
    """v10 after v9 (not between v1 and v2, as text would sort it)."""
    return (int(version[1:]), version) if VERSION_PATTERN.fullmatch(version) else (-1, version)


def parse_version_entry(entry: str) -> tuple[str, str, str]:
    """`name:version=path` (TASK_MODEL_VERSIONS / --task-model-versions)."""
    head, sep, path = entry.partition("=")
    name, colon, version = head.partition(":")
    if not (sep and colon and name.strip() and version.strip() and path.strip()):
        raise ValueError(f"task model version {entry!r}: expected name:version=path, e.g. summarizer:v2=/models/v2")
    return name.strip(), version.strip(), path.strip()


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)
