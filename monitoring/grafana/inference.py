"""The inference servers' dashboard: traffic, latency, throughput, queue depth, adapters and caches of every
`ministudio-serve`, selected by deployment and tenant."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models import common

from monitoring.grafana.panels import (
    RATE,
    SERVERS,
    quantiles,
    query,
    stat_panel,
    timeseries_panel,
    variable,
)


def inference() -> Dashboard:
    requests = f"rate(api_requests_total{{{SERVERS}}}{RATE})"
    return (
        Dashboard("Mini Studio / inference servers")
        .uid("ministudio-inference")
        .description("Traffic, latency, throughput, queue depth, adapters and caches of `ministudio-serve`.")
        .tags(["ministudio", "inference"])
        .refresh("10s")
        .time("now-30m", "now")
        .timezone(common.TimeZoneBrowser)
        .with_variable(
            variable("deployment", "Deployment", "label_values(vllm:num_requests_waiting, deployment)", ".+")
        )
        .with_variable(
            variable(
                "tenant", "Tenant", 'label_values(vllm:num_requests_waiting{deployment=~"$deployment"}, tenant)', ".*"
            )
        )
        .with_row(Row("Overview"))
        .with_panel(
            stat_panel(
                "Requests waiting",
                "short",
                "vllm:num_requests_waiting summed over the selected servers: what KEDA scales on.",
                query(f"sum(vllm:num_requests_waiting{{{SERVERS}}})"),
            )
        )
        .with_panel(
            stat_panel(
                "Generated tokens/s",
                "short",
                "Tokens generated per second across the selected servers.",
                query(f"sum(rate(vllm:generation_tokens_total{{{SERVERS}}}{RATE}))"),
            )
        )
        .with_panel(
            stat_panel(
                "LoRA adapters loaded",
                "short",
                "Adapters held in memory across the selected servers.",
                query(f"sum(ministudio_lora_adapters_loaded{{{SERVERS}}})"),
            )
        )
        .with_panel(
            stat_panel(
                "Models loaded",
                "short",
                "Servers whose model is loaded (seed 002's model_loaded).",
                query(f"sum(model_loaded{{{SERVERS}}})"),
            )
        )
        .with_row(Row("Traffic"))
        .with_panel(
            timeseries_panel(
                "Requests by status",
                "reqps",
                "HTTP requests per second by deployment and status (seed 002's api_requests_total).",
                query(f"sum by (deployment, status) ({requests})", "{{deployment}} {{status}}"),
            )
        )
        .with_panel(
            timeseries_panel(
                "Generations by model and outcome",
                "reqps",
                "Completions per second by model (base or adapter) and outcome.",
                query(
                    f"sum by (model, status) (rate(ministudio_inference_requests_total{{{SERVERS}}}{RATE}))",
                    "{{model}} {{status}}",
                ),
            )
        )
        .with_panel(
            timeseries_panel(
                "Server errors",
                "percentunit",
                "Share of requests answered 5xx.",
                query(
                    f'sum by (deployment) (rate(api_requests_total{{{SERVERS}, status=~"5.."}}{RATE})) '
                    f"/ sum by (deployment) ({requests})",
                    "{{deployment}}",
                ),
            )
        )
        .with_row(Row("Latency"))
        .with_panel(
            timeseries_panel(
                "Request latency",
                "s",
                "End-to-end generation latency (vllm:e2e_request_latency_seconds).",
                *quantiles("vllm:e2e_request_latency_seconds", "deployment", "{{deployment}}"),
            )
        )
        .with_panel(
            timeseries_panel(
                "Time to first token",
                "s",
                "vllm:time_to_first_token_seconds: queueing plus prefill.",
                *quantiles("vllm:time_to_first_token_seconds", "deployment", "{{deployment}}"),
            )
        )
        .with_panel(
            timeseries_panel(
                "HTTP latency by route (p95)",
                "s",
                "Seed 002's api_request_duration_seconds, by route.",
                query(
                    "histogram_quantile(0.95, sum by (le, endpoint) "
                    f"(rate(api_request_duration_seconds_bucket{{{SERVERS}}}{RATE})))",
                    "{{endpoint}}",
                ),
            )
        )
        .with_row(Row("Throughput"))
        .with_panel(
            timeseries_panel(
                "Tokens/s",
                "short",
                "Prompt tokens prefilled and tokens generated per second.",
                query(
                    f"sum by (deployment) (rate(vllm:generation_tokens_total{{{SERVERS}}}{RATE}))",
                    "generated {{deployment}}",
                ),
                query(
                    f"sum by (deployment) (rate(vllm:prompt_tokens_total{{{SERVERS}}}{RATE}))",
                    "prompt {{deployment}}",
                ),
            )
        )
        .with_panel(
            timeseries_panel(
                "Tokens/s per request",
                "short",
                "Seed 002's tokens_per_second: a moving average of each request's generation rate.",
                query(f"avg by (deployment) (tokens_per_second{{{SERVERS}}})", "{{deployment}}"),
            )
        )
        .with_row(Row("Queue and capacity"))
        .with_panel(
            timeseries_panel(
                "Queue depth",
                "short",
                "Requests waiting to join the batch (KEDA's trigger) and requests running in it.",
                query(f"sum by (deployment) (vllm:num_requests_waiting{{{SERVERS}}})", "waiting {{deployment}}"),
                query(f"sum by (deployment) (vllm:num_requests_running{{{SERVERS}}})", "running {{deployment}}"),
            )
        )
        .with_panel(
            timeseries_panel(
                "Adapters loaded",
                "short",
                "LoRA adapters held in memory per deployment.",
                query(f"sum by (deployment) (ministudio_lora_adapters_loaded{{{SERVERS}}})", "{{deployment}}"),
            )
        )
        .with_panel(
            timeseries_panel(
                "GPU memory",
                "bytes",
                "Memory the server process holds on its GPU (0 on CPU).",
                query(f"sum by (deployment) (gpu_memory_usage_bytes{{{SERVERS}}})", "{{deployment}}"),
            )
        )
        .with_panel(
            timeseries_panel(
                "Model load time",
                "s",
                "How long each server took to load its model.",
                query(f"max by (deployment) (model_load_seconds{{{SERVERS}}})", "{{deployment}}"),
            )
        )
        .with_row(Row("Caches"))
        .with_panel(
            timeseries_panel(
                "Cache hit rate",
                "percentunit",
                "Hits over lookups for each cache a server answers from (ministudio_cache_requests_total).",
                query(
                    f'sum by (cache) (rate(ministudio_cache_requests_total{{{SERVERS}, result="hit"}}{RATE})) '
                    f"/ sum by (cache) (rate(ministudio_cache_requests_total{{{SERVERS}}}{RATE}))",
                    "{{cache}}",
                ),
            )
        )
        .with_panel(
            timeseries_panel(
                "Cache lookups",
                "reqps",
                "Lookups per second by cache and result.",
                query(
                    f"sum by (cache, result) (rate(ministudio_cache_requests_total{{{SERVERS}}}{RATE}))",
                    "{{cache}} {{result}}",
                ),
            )
        )
    )
