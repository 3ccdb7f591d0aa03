"""The control plane's dashboard: the API's requests, errors and latency by route."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from monitoring.grafana.panels import CONTROL_PLANE, RATE, dashboard, query

REQUESTS = f"rate(api_requests_total{{{CONTROL_PLANE}}}{RATE})"
DURATION = f"rate(api_request_duration_seconds_bucket{{{CONTROL_PLANE}}}{RATE})"
ERRORS = f'sum(rate(api_requests_total{{{CONTROL_PLANE}, status=~"5.."}}{RATE})) / sum({REQUESTS})'


def control_plane() -> Dashboard:
    latency = [
        query(f"histogram_quantile({q}, sum by (le) ({DURATION}))", f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)
    ]
    return dashboard(
        "Mini Studio / control plane",
        "ministudio-control-plane",
        "The API's traffic and latency, as `make run` serves it.",
        ["ministudio", "control-plane"],
        overview=[
            ("Requests/s", "reqps", "All API requests per second.", [f"sum({REQUESTS})"]),
            ("Server errors", "percentunit", "Share of requests answered 5xx.", [ERRORS]),
            (
                "Latency p95",
                "s",
                "95th percentile of request duration, all routes.",
                [f"histogram_quantile(0.95, sum by (le) ({DURATION}))"],
            ),
            ("Up", "short", "1 while Prometheus can scrape the API.", [f"max(up{{{CONTROL_PLANE}}})"]),
        ],
        rows={
            "Traffic": [
                (
                    "Requests by route",
                    "reqps",
                    "Requests per second by route template.",
                    [(f"sum by (method, endpoint) ({REQUESTS})", "{{method}} {{endpoint}}")],
                ),
                (
                    "Requests by status",
                    "reqps",
                    "Requests per second by status code: 4xx are callers' mistakes, 5xx are ours.",
                    [(f"sum by (status) ({REQUESTS})", "{{status}}")],
                ),
            ],
            "Latency": [
                ("Latency", "s", "Request duration quantiles, all routes.", latency),
                (
                    "Latency by route (p95)",
                    "s",
                    "95th percentile of request duration by route template.",
                    [(f"histogram_quantile(0.95, sum by (le, endpoint) ({DURATION}))", "{{endpoint}}")],
                ),
            ],
        },
    )
