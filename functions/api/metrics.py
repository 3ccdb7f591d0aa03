"""Prometheus metrics for the control plane where a long-lived process serves it (`make run`, e2e tests): request
counts and latency under seed 002's names and labels, so one PromQL shape covers the API and the inference servers
(the `job` label tells them apart).

Not mounted in Lambda: each container would count only its own invocations and nothing could scrape it; there,
Powertools' metrics go to CloudWatch (functions/core/observability.py). prometheus-client is a `local` dependency
and is imported only here, so the Lambda bundle and its cold start do not carry it.

`/metrics` is open, like the inference servers' (seed 002 lists it without auth): the local runtime binds the API
to 127.0.0.1, and the series carry route templates and status codes, never tenants, keys or ids.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
Scope = dict[str, Any]


class HttpMetrics:
    """One registry per app, so several apps in one process (tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "api_requests",
            "HTTP requests by route and status.",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "api_request_duration_seconds",
            "HTTP request duration.",
            ["method", "endpoint"],
            registry=self.registry,
            buckets=_LATENCY,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI (streamed responses pass untouched); the outermost layer, so 413s and errors are counted too.
    Routes are labelled by their template (`/v1/files/{file_id}`), unmatched paths as `unmatched`: ids and
    scanners' paths would otherwise make a series each."""

    def __init__(self, app: Any, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, endpoint, str(status)).inc()
            self.metrics.duration.labels(method, endpoint).observe(time.perf_counter() - started)


def instrument(app: FastAPI) -> FastAPI:
    """Count every request of `app` and serve the counts at GET /metrics (left out of the OpenAPI document).

    The one place the middleware is added (the local runtime calls this on the app it serves); instrumenting an app
    twice changes nothing, so no request is ever counted twice."""
    if getattr(app.state, "http_metrics", None) is not None:
        return app
    metrics = app.state.http_metrics = HttpMetrics()

    async def scrape() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", scrape, methods=["GET"], include_in_schema=False)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
