"""The Grafana dashboards: the JSON in the repository is what monitoring/grafana/build.py makes, and every metric a
panel or variable queries is exported by the server it watches (a real scrape of each /metrics page)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.helpers.monitoring import (
    DASHBOARDS,
    SERVER_KEY,
    SYNTHETIC,
    dashboard_queries,
    exported_series,
    metric_names,
    tiny_inference_app,
)

pytest.importorskip("grafana_foundation_sdk", reason="the Grafana SDK is in the dev extra")


@pytest.fixture(scope="module")
def inference_metrics(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The inference server's /metrics after it served a completion, scraped without the server key."""
    app, _ = tiny_inference_app(tmp_path_factory.mktemp("serve"))
    with TestClient(app) as client:
        auth = {"Authorization": f"Bearer {SERVER_KEY}"}
        body = {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "prompt": "Hello", "max_tokens": 3}
        assert client.post("/v1/completions", json=body, headers=auth).status_code == 200
        scraped = client.get("/metrics")
        assert scraped.status_code == 200, "Prometheus scrapes without the server key: /metrics must stay open"
        return scraped.text


@pytest.fixture(scope="module")
def control_plane_metrics() -> Iterator[str]:
    from functions.api.app import create_app
    from functions.api.metrics import instrument

    with TestClient(instrument(create_app())) as client:
        assert client.get("/").status_code == 200
        client.get("/no/such/route")
        yield client.get("/metrics").text


def test_dashboards_in_the_repository_are_a_fresh_build() -> None:
    from monitoring.grafana import build

    built = build.build_all()
    on_disk = {path.name: path.read_text() for path in DASHBOARDS.glob("*.json")}
    assert set(on_disk) == set(built), "run `make dashboards`: the dashboards folder holds other files than build.py"
    for name, text in built.items():
        assert on_disk[name] == text, f"{name} was edited by hand or build.py changed: run `make dashboards`"


def test_metric_names_are_read_from_promql() -> None:
    # Given expressions with aggregations, grouping, matchers holding metric-like strings, ranges and arithmetic
    expr = (
        'histogram_quantile(0.95, sum by (le, deployment) (rate(vllm:e2e_request_latency_seconds_bucket{a="x_y"}[5m])))'
        ' / sum without (pod) (api_requests_total{status=~"5.."}) and on (job) up offset 5m'
    )
    # Then only the selected metrics are names
    assert metric_names(expr) == {"vllm:e2e_request_latency_seconds_bucket", "api_requests_total", "up"}


@pytest.mark.parametrize("dashboard", sorted(p.name for p in DASHBOARDS.glob("*.json")))
def test_every_metric_a_dashboard_queries_is_exported(
    dashboard: str, inference_metrics: str, control_plane_metrics: str
) -> None:
    # Given the server each dashboard watches (a new dashboard must say which)
    watched = {"inference.json": inference_metrics, "control-plane.json": control_plane_metrics}
    assert dashboard in watched, f"say which server {dashboard} watches, so its metrics are checked"
    scraped = watched[dashboard]
    exported = exported_series(scraped) | SYNTHETIC
    queries = dashboard_queries(DASHBOARDS / dashboard)
    queried = set().union(*(metric_names(q) for q in queries))
    assert queried, f"{dashboard} queries no metric"
    assert queried <= exported, f"{dashboard} queries metrics no server exports: {sorted(queried - exported)}"


def test_control_plane_counts_requests_by_route_template(control_plane_metrics: str) -> None:
    assert 'api_requests_total{endpoint="/",method="GET",status="200"} 1.0' in control_plane_metrics
    # An unknown path is one series whatever it is, so scanners cannot blow up the series count
    assert 'endpoint="unmatched",method="GET",status="404"' in control_plane_metrics
    assert "/no/such/route" not in control_plane_metrics


def test_dashboards_name_only_the_provisioned_datasource() -> None:
    provisioning = DASHBOARDS.parent / "provisioning"
    provisioned = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    uids = {(source["type"], source["uid"]) for source in provisioned["datasources"]}
    for path in DASHBOARDS.glob("*.json"):
        named = set(_datasources(json.loads(path.read_text())))
        assert named and named <= uids, f"{path.name} names data sources Grafana is not given: {named - uids}"
    # And Grafana loads the dashboards from where compose.yaml mounts them
    providers = yaml.safe_load((provisioning / "dashboards" / "ministudio.yml").read_text())["providers"]
    assert [p["options"]["path"] for p in providers] == ["/var/lib/grafana/dashboards"]


def _datasources(node: Any) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        ref = node.get("datasource")
        if isinstance(ref, dict) and "uid" in ref:
            yield ref["type"], ref["uid"]
        for value in node.values():
            yield from _datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasources(item)
