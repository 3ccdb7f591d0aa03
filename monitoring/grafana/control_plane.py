"""The control plane's dashboard: the API's requests, errors and latency by route."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models import common

from monitoring.grafana.panels import (
    CONTROL_PLANE,
    RATE,
    query,
    stat_panel,
    timeseries_panel,
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
            stat_panel("Requests/s", "reqps", "All API requests per second.", query(f"sum({requests})")),
        )
        .with_panel(
            stat_panel(
                "Server errors",
                "percentunit",
                "Share of requests answered 5xx.",
                query(f'sum(rate(api_requests_total{{{CONTROL_PLANE}, status=~"5.."}}{RATE})) / sum({requests})'),
            )
        )
        .with_panel(
            stat_panel(
                "Latency p95",
                "s",
                "95th percentile of request duration, all routes.",
                query(f"histogram_quantile(0.95, sum by (le) ({duration}))"),
            )
        )
        .with_panel(
            stat_panel(
                "Up",
                "short",
                "1 while Prometheus can scrape the API.",
                query(f"max(up{{{CONTROL_PLANE}}})"),
            )
        )
        .with_row(Row("Traffic"))
        .with_panel(
            timeseries_panel(
                "Requests by route",
                "reqps",
                "Requests per second by route template.",
                query(f"sum by (method, endpoint) ({requests})", "{{method}} {{endpoint}}"),
            )
        )
        .with_panel(
            timeseries_panel(
                "Requests by status",
                "reqps",
                "Requests per second by status code: 4xx are callers' mistakes, 5xx are ours.",
                query(f"sum by (status) ({requests})", "{{status}}"),
            )
        )
        .with_row(Row("Latency"))
        .with_panel(
            timeseries_panel(
                "Latency",
                "s",
                "Request duration quantiles, all routes.",
                *[
                    query(f"histogram_quantile({q}, sum by (le) ({duration}))", f"p{round(q * 100)}")
                    for q in (0.5, 0.95, 0.99)
                ],
            )
        )
        .with_panel(
            timeseries_panel(
                "Latency by route (p95)",
                "s",
                "95th percentile of request duration by route template.",
                query(f"histogram_quantile(0.95, sum by (le, endpoint) ({duration}))", "{{endpoint}}"),
            )
        )
    )
