"""What one server process holds: settings, metrics, the request log, and (once loaded) engine and services."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ministudio_serve.engines.base import Engine
from ministudio_serve.metrics import Metrics
from ministudio_serve.services.adapters import AdapterService
from ministudio_serve.services.generation import GenerationService
from ministudio_serve.services.request_log import RequestLog
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

    @property
    def ready(self) -> bool:
        return self.generation is not None

    def base_names(self, extra: set[str] | None = None) -> set[str]:
        return {self.settings.model, self.settings.model_name, *(extra or set())}

    def attach(self, engine: Engine, model_dir: str | None = None) -> None:
        """The engine is up: build the services that use it and report the model as loaded."""
        s = self.settings
        names = self.base_names({model_dir} if model_dir else None)
        self.adapters = AdapterService(
            engine,
            names,
            s.max_loras,
            s.max_lora_rank,
            s.adapter_source,
            s.adapter_cache,
            keep_weights=s.engine == "transformers",
        )
        context = s.max_model_len or engine.context_length
        self.generation = GenerationService(
            engine, self.adapters, self.metrics, self.request_log, s.model_name, s.default_max_tokens, context
        )
        self.engine = engine
        self.load_seconds = time.time() - self.started_at if self.load_seconds is None else self.load_seconds
        self.metrics.model_loaded.set(1)
        self.metrics.model_load_seconds.set(self.load_seconds)
