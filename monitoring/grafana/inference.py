"""The inference servers' dashboard: traffic, latency, throughput, queue depth, adapters and caches of every
`ministudio-serve`, selected by deployment and tenant."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from monitoring.grafana.panels import RATE, SERVERS, dashboard, quantiles, variable

REQUESTS = f"rate(api_requests_total{{{SERVERS}}}{RATE})"
FIVE_XX = f'rate(api_requests_total{{{SERVERS}, status=~"5.."}}{RATE})'
ERRORS = f"sum by (deployment) ({FIVE_XX}) / sum by (deployment) ({REQUESTS})"
CACHE = f"rate(ministudio_cache_requests_total{{{SERVERS}}}{RATE})"
HITS = f'rate(ministudio_cache_requests_total{{{SERVERS}, result="hit"}}{RATE})'
CACHE_HITS = f"sum by (cache) ({HITS}) / sum by (cache) ({CACHE})"
WAITING = "vllm:num_requests_waiting"
TOKENS, QUEUE = ("generated ", "prompt "), ("waiting ", "running ")
ROUTE_P95 = (
    f"histogram_quantile(0.95, sum by (le, endpoint) (rate(api_request_duration_seconds_bucket{{{SERVERS}}}{RATE})))"
)


def per_deployment(how: str, *series: str, prefixes: tuple[str, ...] = ("",)) -> list[tuple[str, str]]:
    """`how` (sum, avg, max) over each deployment's part of each series, labelled by deployment after its prefix."""
    return [
        (f"{how} by (deployment) ({expr})", f"{prefix}{{{{deployment}}}}")
        for expr, prefix in zip(series, prefixes, strict=True)
    ]


def servers(metric: str) -> str:
    return f"{metric}{{{SERVERS}}}"


def rate(metric: str) -> str:
    return f"rate({metric}{{{SERVERS}}}{RATE})"


def inference() -> Dashboard:
    return dashboard(
        "Mini Studio / inference servers",
        "ministudio-inference",
        "Traffic, latency, throughput, queue depth, adapters and caches of `ministudio-serve`.",
        ["ministudio", "inference"],
        variables=(
            variable("deployment", "Deployment", "label_values(vllm:num_requests_waiting, deployment)", ".+"),
            variable(
                "tenant", "Tenant", 'label_values(vllm:num_requests_waiting{deployment=~"$deployment"}, tenant)', ".*"
            ),
        ),
        overview=[
            (
                "Requests waiting",
                "short",
                "vllm:num_requests_waiting summed over the selected servers: what KEDA scales on.",
                [f"sum({servers('vllm:num_requests_waiting')})"],
            ),
            (
                "Generated tokens/s",
                "short",
                "Tokens generated per second across the selected servers.",
                [f"sum({rate('vllm:generation_tokens_total')})"],
            ),
            (
                "LoRA adapters loaded",
                "short",
                "Adapters held in memory across the selected servers.",
                [f"sum({servers('ministudio_lora_adapters_loaded')})"],
            ),
            (
                "Models loaded",
                "short",
                "Servers whose model is loaded (seed 002's model_loaded).",
                [f"sum({servers('model_loaded')})"],
            ),
        ],
        rows={
            "Traffic": [
                (
                    "Requests by status",
                    "reqps",
                    "HTTP requests per second by deployment and status (seed 002's api_requests_total).",
                    [(f"sum by (deployment, status) ({REQUESTS})", "{{deployment}} {{status}}")],
                ),
                (
                    "Generations by model and outcome",
                    "reqps",
                    "Completions per second by model (base or adapter) and outcome.",
                    [
                        (
                            f"sum by (model, status) ({rate('ministudio_inference_requests_total')})",
                            "{{model}} {{status}}",
                        )
                    ],
                ),
                ("Server errors", "percentunit", "Share of requests answered 5xx.", [(ERRORS, "{{deployment}}")]),
            ],
            "Latency": [
                (
                    "Request latency",
                    "s",
                    "End-to-end generation latency (vllm:e2e_request_latency_seconds).",
                    quantiles("vllm:e2e_request_latency_seconds", "deployment", "{{deployment}}"),
                ),
                (
                    "Time to first token",
                    "s",
                    "vllm:time_to_first_token_seconds: queueing plus prefill.",
                    quantiles("vllm:time_to_first_token_seconds", "deployment", "{{deployment}}"),
                ),
                (
                    "HTTP latency by route (p95)",
                    "s",
                    "Seed 002's api_request_duration_seconds, by route.",
                    [(ROUTE_P95, "{{endpoint}}")],
                ),
            ],
            "Throughput": [
                (
                    "Tokens/s",
                    "short",
                    "Prompt tokens prefilled and tokens generated per second.",
                    per_deployment(
                        "sum", rate("vllm:generation_tokens_total"), rate("vllm:prompt_tokens_total"), prefixes=TOKENS
                    ),
                ),
                (
                    "Tokens/s per request",
                    "short",
                    "Seed 002's tokens_per_second: a moving average of each request's generation rate.",
                    per_deployment("avg", servers("tokens_per_second")),
                ),
            ],
            "Queue and capacity": [
                (
                    "Queue depth",
                    "short",
                    "Requests waiting to join the batch (KEDA's trigger) and requests running in it.",
                    per_deployment("sum", servers(WAITING), servers("vllm:num_requests_running"), prefixes=QUEUE),
                ),
                (
                    "Adapters loaded",
                    "short",
                    "LoRA adapters held in memory per deployment.",
                    per_deployment("sum", servers("ministudio_lora_adapters_loaded")),
                ),
                (
                    "GPU memory",
                    "bytes",
                    "Memory the server process holds on its GPU (0 on CPU).",
                    per_deployment("sum", servers("gpu_memory_usage_bytes")),
                ),
                (
                    "Model load time",
                    "s",
                    "How long each server took to load its model.",
                    per_deployment("max", servers("model_load_seconds")),
                ),
            ],
            "Caches": [
                (
                    "Cache hit rate",
                    "percentunit",
                    "Hits over lookups for each cache a server answers from (ministudio_cache_requests_total).",
                    [(CACHE_HITS, "{{cache}}")],
                ),
                (
                    "Cache lookups",
                    "reqps",
                    "Lookups per second by cache and result.",
                    [(f"sum by (cache, result) ({CACHE})", "{{cache}} {{result}}")],
                ),
            ],
        },
    )
