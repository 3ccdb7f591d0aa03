"""What one server process holds: settings, metrics, the request log, and (once loaded) engine and services."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ministudio_serve.engines.base import Engine
from ministudio_serve.metrics import Metrics
from ministudio_serve.mlflow_registry import RegisteredModel
from ministudio_serve.services.adapters import AdapterService
from ministudio_serve.services.generation import GenerationService
from ministudio_serve.services.request_log import RequestLog
from ministudio_serve.services.task_routing import TaskRouter
from ministudio_serve.settings import ServeSettings


@dataclass
class ServerState:
    settings: ServeSettings
    metrics: Metrics
    request_log: RequestLog
    started_at: float = field(default_factory=time.time)
    engine: Engine | None = None
    adapters: AdapterService | None = None
    generation: GenerationService | None = None
    load_error: str | None = None
    load_seconds: float | None = None
    tasks: TaskRouter | None = None  # seed 003's task models and the embedder (profile llm)
    registered: RegisteredModel | None = None  # seed 002's MLflow model, when MLFLOW_TRACKING_URI is set

    @property
    def ready(self) -> bool:
        return self.generation is not None

    def base_names(self, extra: set[str] | None = None) -> set[str]:
        return {self.settings.model, self.settings.model_name, *(extra or set())}

    def _adapter_service(self, engine: Engine, names: set[str]) -> AdapterService:
        s = self.settings
        return AdapterService(
            engine,
            self.base_names(names),
            s.max_loras,
            s.max_lora_rank,
            s.adapter_source,
            s.adapter_cache,
            keep_weights=s.engine == "transformers",
        )

    async def attach_registered(self, engine: Engine, model_dir: str, registered: RegisteredModel) -> None:
        """Like attach, for a registry's model: its names mean base + its adapter before any request can see them."""
        self.registered = registered
        self.settings = self.settings.model_copy(update={"model_version": registered.version})
        adapters = self._adapter_service(engine, {model_dir, registered.base_model})
        await adapters.serve_as({self.settings.model, self.settings.model_name}, str(registered.adapter_dir))
        self.attach(engine, adapters=adapters)

    def attach(self, engine: Engine, model_dir: str | None = None, adapters: AdapterService | None = None) -> None:
        """The engine is up: build the services that use it and report the model as loaded."""
        s = self.settings
        self.adapters = adapters or self._adapter_service(engine, {model_dir} if model_dir else set())
        context = s.max_model_len or engine.context_length
        self.generation = GenerationService(
            engine, self.adapters, self.metrics, self.request_log, s.model_name, s.default_max_tokens, context
        )
        self.engine = engine
        self.load_seconds = time.time() - self.started_at if self.load_seconds is None else self.load_seconds
        self.metrics.model_loaded.set(1)
        self.metrics.model_load_seconds.set(self.load_seconds)
