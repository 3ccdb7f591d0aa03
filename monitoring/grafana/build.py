"""Mini Studio's Grafana dashboards, built with grafana-foundation-sdk: `make dashboards` (or
`python -m monitoring.grafana.build`) writes monitoring/grafana/dashboards/*.json, which Grafana provisions from
monitoring/grafana/provisioning. Edit this file, never the JSON: a test rebuilds the dashboards and compares.

Every query names metrics the servers export (a test scrapes a real inference server and the control plane):
vLLM's names, which the transformers engine exports too, seed 002's `api_*`, and Mini Studio's `ministudio_*`.
The inference dashboard selects servers by the `deployment` label that the local file_sd targets and the EKS scrape
config both set (functions/compute/serving.py), so the same dashboard reads a laptop, Compose or a cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable, Row
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableOption, VariableRefresh

OUT = Path(__file__).resolve().parent / "dashboards"
# monitoring/grafana/provisioning/datasources/prometheus.yml gives the Prometheus data source this uid.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
RATE = "[$__rate_interval]"
# Inference servers only: `.+` as the "All" value keeps out series without a deployment (the control plane's).
SERVERS = 'deployment=~"$deployment", tenant=~"$tenant"'
CONTROL_PLANE = 'job="control-plane"'  # the job name in monitoring/prometheus/prometheus.yml


def _query(expr: str, legend: str = "__auto") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)


def _timeseries(title: str, unit: str, description: str, *queries: prometheus.Dataquery) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .fill_opacity(10)
        .legend(
            common_builders.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
        )
    )
    for ref, query in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(query.ref_id(ref))
    return panel


def _stat(title: str, unit: str, description: str, query: prometheus.Dataquery) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(4)
        .span(6)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(query.ref_id("A"))
    )


def _quantiles(metric: str, by: str, legend: str) -> list[prometheus.Dataquery]:
    return [
        _query(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{SERVERS}}}{RATE})))",
            f"p{round(q * 100)} {legend}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def _variable(name: str, label: str, query: str, all_value: str) -> QueryVariable:
    return (
        QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .multi(True)
        .include_all(True)
        .all_value(all_value)
        .current(VariableOption(selected=True, text="All", value="$__all"))
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
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
            _variable("deployment", "Deployment", "label_values(vllm:num_requests_waiting, deployment)", ".+")
        )
        .with_variable(
            _variable(
                "tenant", "Tenant", 'label_values(vllm:num_requests_waiting{deployment=~"$deployment"}, tenant)', ".*"
            )
        )
        .with_row(Row("Overview"))
        .with_panel(
            _stat(
                "Requests waiting",
                "short",
                "vllm:num_requests_waiting summed over the selected servers: what KEDA scales on.",
                _query(f"sum(vllm:num_requests_waiting{{{SERVERS}}})"),
            )
        )
        .with_panel(
            _stat(
                "Generated tokens/s",
                "short",
                "Tokens generated per second across the selected servers.",
                _query(f"sum(rate(vllm:generation_tokens_total{{{SERVERS}}}{RATE}))"),
            )
        )
        .with_panel(
            _stat(
                "LoRA adapters loaded",
                "short",
                "Adapters held in memory across the selected servers.",
                _query(f"sum(ministudio_lora_adapters_loaded{{{SERVERS}}})"),
            )
        )
        .with_panel(
            _stat(
                "Models loaded",
                "short",
                "Servers whose model is loaded (seed 002's model_loaded).",
                _query(f"sum(model_loaded{{{SERVERS}}})"),
            )
        )
        .with_row(Row("Traffic"))
        .with_panel(
            _timeseries(
                "Requests by status",
                "reqps",
                "HTTP requests per second by deployment and status (seed 002's api_requests_total).",
                _query(f"sum by (deployment, status) ({requests})", "{{deployment}} {{status}}"),
            )
        )
        .with_panel(
            _timeseries(
                "Generations by model and outcome",
                "reqps",
                "Completions per second by model (base or adapter) and outcome.",
                _query(
                    f"sum by (model, status) (rate(ministudio_inference_requests_total{{{SERVERS}}}{RATE}))",
                    "{{model}} {{status}}",
                ),
            )
        )
        .with_panel(
            _timeseries(
                "Server errors",
                "percentunit",
                "Share of requests answered 5xx.",
                _query(
                    f'sum by (deployment) (rate(api_requests_total{{{SERVERS}, status=~"5.."}}{RATE})) '
                    f"/ sum by (deployment) ({requests})",
                    "{{deployment}}",
                ),
            )
        )
        .with_row(Row("Latency"))
        .with_panel(
            _timeseries(
                "Request latency",
                "s",
                "End-to-end generation latency (vllm:e2e_request_latency_seconds).",
                *_quantiles("vllm:e2e_request_latency_seconds", "deployment", "{{deployment}}"),
            )
        )
        .with_panel(
            _timeseries(
                "Time to first token",
                "s",
                "vllm:time_to_first_token_seconds: queueing plus prefill.",
                *_quantiles("vllm:time_to_first_token_seconds", "deployment", "{{deployment}}"),
            )
        )
        .with_panel(
            _timeseries(
                "HTTP latency by route (p95)",
                "s",
                "Seed 002's api_request_duration_seconds, by route.",
                _query(
                    "histogram_quantile(0.95, sum by (le, endpoint) "
                    f"(rate(api_request_duration_seconds_bucket{{{SERVERS}}}{RATE})))",
                    "{{endpoint}}",
                ),
            )
        )
        .with_row(Row("Throughput"))
        .with_panel(
            _timeseries(
                "Tokens/s",
                "short",
                "Prompt tokens prefilled and tokens generated per second.",
                _query(
                    f"sum by (deployment) (rate(vllm:generation_tokens_total{{{SERVERS}}}{RATE}))",
                    "generated {{deployment}}",
                ),
                _query(
                    f"sum by (deployment) (rate(vllm:prompt_tokens_total{{{SERVERS}}}{RATE}))",
                    "prompt {{deployment}}",
                ),
            )
        )
        .with_panel(
            _timeseries(
                "Tokens/s per request",
                "short",
                "Seed 002's tokens_per_second: a moving average of each request's generation rate.",
                _query(f"avg by (deployment) (tokens_per_second{{{SERVERS}}})", "{{deployment}}"),
            )
        )
        .with_row(Row("Queue and capacity"))
        .with_panel(
            _timeseries(
                "Queue depth",
                "short",
                "Requests waiting to join the batch (KEDA's trigger) and requests running in it.",
                _query(f"sum by (deployment) (vllm:num_requests_waiting{{{SERVERS}}})", "waiting {{deployment}}"),
                _query(f"sum by (deployment) (vllm:num_requests_running{{{SERVERS}}})", "running {{deployment}}"),
            )
        )
        .with_panel(
            _timeseries(
                "Adapters loaded",
                "short",
                "LoRA adapters held in memory per deployment.",
                _query(f"sum by (deployment) (ministudio_lora_adapters_loaded{{{SERVERS}}})", "{{deployment}}"),
            )
        )
        .with_panel(
            _timeseries(
                "GPU memory",
                "bytes",
                "Memory the server process holds on its GPU (0 on CPU).",
                _query(f"sum by (deployment) (gpu_memory_usage_bytes{{{SERVERS}}})", "{{deployment}}"),
            )
        )
        .with_panel(
            _timeseries(
                "Model load time",
                "s",
                "How long each server took to load its model.",
                _query(f"max by (deployment) (model_load_seconds{{{SERVERS}}})", "{{deployment}}"),
            )
        )
        .with_row(Row("Caches"))
        .with_panel(
            _timeseries(
                "Cache hit rate",
                "percentunit",
                "Hits over lookups for each cache a server answers from (ministudio_cache_requests_total).",
                _query(
                    f'sum by (cache) (rate(ministudio_cache_requests_total{{{SERVERS}, result="hit"}}{RATE})) '
                    f"/ sum by (cache) (rate(ministudio_cache_requests_total{{{SERVERS}}}{RATE}))",
                    "{{cache}}",
                ),
            )
        )
        .with_panel(
            _timeseries(
                "Cache lookups",
                "reqps",
                "Lookups per second by cache and result.",
                _query(
                    f"sum by (cache, result) (rate(ministudio_cache_requests_total{{{SERVERS}}}{RATE}))",
                    "{{cache}} {{result}}",
                ),
            )
        )
    )


def control_plane() -> Dashboard:
    requests = f"rate(api_requests_total{{{CONTROL_PLANE}}}{RATE})"
    duration = f"rate(api_request_duration_seconds_bucket{{{CONTROL_PLANE}}}{RATE})"
    return (
        Dashboard("Mini Studio / control plane")
        .uid("ministudio-control-plane")
        .description("The API's traffic and latency, as `make run` serves it.")
        .tags(["ministudio", "control-plane"])
        .refresh("10s")
        .time("now-30m", "now")
        .timezone(common.TimeZoneBrowser)
        .with_row(Row("Overview"))
        .with_panel(
            _stat("Requests/s", "reqps", "All API requests per second.", _query(f"sum({requests})")),
        )
        .with_panel(
            _stat(
                "Server errors",
                "percentunit",
                "Share of requests answered 5xx.",
                _query(f'sum(rate(api_requests_total{{{CONTROL_PLANE}, status=~"5.."}}{RATE})) / sum({requests})'),
            )
        )
        .with_panel(
            _stat(
                "Latency p95",
                "s",
                "95th percentile of request duration, all routes.",
                _query(f"histogram_quantile(0.95, sum by (le) ({duration}))"),
            )
        )
        .with_panel(
            _stat(
                "Up",
                "short",
                "1 while Prometheus can scrape the API.",
                _query(f"max(up{{{CONTROL_PLANE}}})"),
            )
        )
        .with_row(Row("Traffic"))
        .with_panel(
            _timeseries(
                "Requests by route",
                "reqps",
                "Requests per second by route template.",
                _query(f"sum by (method, endpoint) ({requests})", "{{method}} {{endpoint}}"),
            )
        )
        .with_panel(
            _timeseries(
                "Requests by status",
                "reqps",
                "Requests per second by status code: 4xx are callers' mistakes, 5xx are ours.",
                _query(f"sum by (status) ({requests})", "{{status}}"),
            )
        )
        .with_row(Row("Latency"))
        .with_panel(
            _timeseries(
                "Latency",
                "s",
                "Request duration quantiles, all routes.",
                *[
                    _query(f"histogram_quantile({q}, sum by (le) ({duration}))", f"p{round(q * 100)}")
                    for q in (0.5, 0.95, 0.99)
                ],
            )
        )
        .with_panel(
            _timeseries(
                "Latency by route (p95)",
                "s",
                "95th percentile of request duration by route template.",
                _query(f"histogram_quantile(0.95, sum by (le, endpoint) ({duration}))", "{{endpoint}}"),
            )
        )
    )


DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "inference.json": inference,
    "control-plane.json": control_plane,
}


def render(dashboard: Dashboard) -> str:
    model = dashboard.build()
    for number, panel in enumerate(model.panels or [], start=1):  # the SDK leaves every id 0; Grafana wants them unique
        panel.id_val = number
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def build_all() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {name: render(make()) for name, make in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the JSON in the repository is not a fresh build")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    built = build_all()
    stale = [name for name, text in built.items() if _read(args.out / name) != text]
    extra = sorted(p.name for p in args.out.glob("*.json") if p.name not in built) if args.out.is_dir() else []
    if args.check:
        for name in [*stale, *extra]:
            print(f"{args.out / name} is not what build.py makes: run `make dashboards`", file=sys.stderr)
        return 1 if stale or extra else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (args.out / name).write_text(built[name])
        print(f"wrote {args.out / name}")
    for name in extra:
        (args.out / name).unlink()
        print(f"removed {args.out / name} (no dashboard builds it)")
    return 0


def _read(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


if __name__ == "__main__":
    sys.exit(main())
