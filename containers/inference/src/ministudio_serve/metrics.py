"""Prometheus metrics under vLLM's names (one KEDA query scales either engine) plus seed 002's and 003's.

Each app gets its own registry, so several servers (or tests) in one process never collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ministudio_serve.engines.base import EngineStats

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)


class _EngineCollector(Collector):
    """Reads queue depths at scrape time, so the gauges are never stale."""

    def __init__(self, model_name: str, stats: Callable[[], EngineStats | None], adapters: Callable[[], int]) -> None:
        self.model_name = model_name
        self.stats = stats
        self.adapters = adapters

    def collect(self) -> Iterator[Metric]:
        stats = self.stats() or EngineStats(0, 0, 0)
        for name, value, doc in (
            ("vllm:num_requests_running", stats.running, "Requests in the running batch."),
            ("vllm:num_requests_waiting", stats.waiting, "Requests waiting to join the batch."),
        ):
            family = GaugeMetricFamily(name, doc, labels=["model_name"])
            family.add_metric([self.model_name], value)
            yield family
        yield GaugeMetricFamily(
            "ministudio_lora_adapters_loaded", "LoRA adapters held in memory.", value=self.adapters()
        )
        yield GaugeMetricFamily("gpu_memory_usage_bytes", "GPU memory allocated by this process.", value=_gpu_bytes())


def _gpu_bytes() -> float:
    try:
        import torch

        return float(torch.cuda.memory_allocated()) if torch.cuda.is_available() else 0.0
    except Exception:  # metrics must never fail a scrape
        return 0.0


class Metrics:
    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds", "Time to first token.", ["model_name"], registry=r, buckets=_LATENCY
        )
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "End-to-end request latency.",
            ["model_name"],
            registry=r,
            buckets=_LATENCY,
        )
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prefilled prompt tokens.", ["model_name"], registry=r)
        self.generation_tokens = Counter("vllm:generation_tokens", "Generated tokens.", ["model_name"], registry=r)
        self.api_requests = Counter(
            "api_requests", "HTTP requests by route and status.", ["method", "endpoint", "status"], registry=r
        )
        self.api_duration = Histogram(
            "api_request_duration_seconds",
            "HTTP request duration.",
            ["method", "endpoint"],
            registry=r,
            buckets=_LATENCY,
        )
        self.inferences = Counter(
            "ministudio_inference_requests",
            "Generations by model (base or adapter) and outcome.",
            ["model", "status"],
            registry=r,
        )
        self.tokens_per_second = Gauge(
            "tokens_per_second", "Generation rate, moving average over requests.", registry=r
        )
        self.model_loaded = Gauge("model_loaded", "1 once the model is loaded.", registry=r)
        self.model_load_seconds = Gauge("model_load_seconds", "Time the model took to load.", registry=r)
        # Any cache a server answers from (seed 004's prediction cache, a response cache): the dashboards' hit rate.
        self.cache_requests = Counter(
            "ministudio_cache_requests",
            "Cache lookups by cache and result (hit or miss).",
            ["cache", "result"],
            registry=r,
        )
        # Seed 003's per-model figures: request count, failures, latency and load time by task model and version.
        self.task_requests = Counter(
            "ministudio_task_requests",
            "Task-model requests by model, version and outcome.",
            ["model", "version", "status"],
            registry=r,
        )
        self.task_latency = Histogram(
            "ministudio_task_latency_seconds",
            "Task-model request latency.",
            ["model", "version"],
            registry=r,
            buckets=_LATENCY,
        )
        self.task_load_seconds = Gauge(
            "ministudio_task_model_load_seconds", "Time each task model took to load.", ["model", "version"], registry=r
        )
        self.task_loaded = Gauge(
            "ministudio_task_model_loaded", "1 while a task model is loaded.", ["model", "version"], registry=r
        )
        self._rate: float | None = None

    def watch(self, stats: Callable[[], EngineStats | None], adapters: Callable[[], int]) -> None:
        self.registry.register(_EngineCollector(self.model_name, stats, adapters))

    def generation(self, model: str, ttft: float | None, total: float, prompt: int, completion: int, ok: bool) -> None:
        if ttft is not None:
            self.ttft.labels(self.model_name).observe(ttft)
        self.e2e.labels(self.model_name).observe(total)
        self.prompt_tokens.labels(self.model_name).inc(prompt)
        self.generation_tokens.labels(self.model_name).inc(completion)
        self.inferences.labels(model, "success" if ok else "failure").inc()
        if completion and total > 0:
            rate = completion / total
            self._rate = rate if self._rate is None else 0.9 * self._rate + 0.1 * rate
            self.tokens_per_second.set(self._rate)

    def cache_lookup(self, cache: str, hit: bool) -> None:
        self.cache_requests.labels(cache, "hit" if hit else "miss").inc()

    def task_request(self, model: str, version: str, seconds: float, ok: bool) -> None:
        self.task_requests.labels(model, version, "success" if ok else "failure").inc()
        self.task_latency.labels(model, version).observe(seconds)

    def watch_task_model(
        self, model: str, version: str, loaded: Callable[[], bool], seconds: Callable[[], float | None]
    ) -> None:
        """Read at scrape time: a model loads (or unloads) without telling the metrics."""
        self.task_loaded.labels(model, version).set_function(lambda: float(loaded()))
        self.task_load_seconds.labels(model, version).set_function(lambda: seconds() or 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
