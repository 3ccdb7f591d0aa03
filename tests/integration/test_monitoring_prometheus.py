"""A real Prometheus (functions/local/prometheus.py) scraping a real inference server announced through a file_sd
target: KEDA's query returns the requests actually waiting, and every dashboard expression runs."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.compute.serving import queue_depth_query
from functions.local import prometheus
from functions.local.prometheus import LocalPrometheus, remove_target, write_target
from tests.helpers import waiting
from tests.helpers.monitoring import (
    DASHBOARDS,
    SERVER_KEY,
    Served,
    concrete,
    dashboard_queries,
    serve,
    tiny_inference_app,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        prometheus.find_prometheus() is None, reason="the prometheus binary is missing: apt-get install prometheus"
    ),
]

DEPLOYMENT = "vllm-base-smollm2-135m-instruct-0a1b2c"
WAITING = 3  # requests held behind the one the engine is running


@pytest.fixture(scope="module")
def gate() -> Iterator[threading.Event]:
    """Closed: the engine's next forward pass blocks, so requests pile up in its queue. Opened at teardown at the
    latest, so a failing test never leaves the engine thread stuck."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gate: threading.Event) -> Iterator[Served]:
    # One request at a time, so every other request waits: the state KEDA scales out on.
    app, engine = tiny_inference_app(tmp_path_factory.mktemp("serve"), max_batch_size=1)

    def hold(module: Any, args: Any) -> None:
        gate.wait(60)

    engine.model.register_forward_pre_hook(hold)
    gate.set()
    with serve(app) as served:
        yield served


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    home = tmp_path_factory.mktemp("prometheus")
    started = prometheus.start(api_port=1, home=home, scrape_interval_seconds=0.5)  # no API here: its job is down
    yield started
    started.stop()
    assert not started.data.exists(), "stop() leaves no TSDB behind"


eventually = functools.partial(waiting.wait_for, interval=0.2)


def value(prom: LocalPrometheus, expr: str) -> float | None:
    result = prom.query(expr)
    return float(result[0]["value"][1]) if result else None


def test_target_file_is_prometheus_file_sd(tmp_path: Path) -> None:
    path = write_target(tmp_path, "vllm-ft-acme-smollm2-abc123", 8123, {"tenant": "acme"})
    assert path == tmp_path / "vllm-ft-acme-smollm2-abc123.json"
    assert json.loads(path.read_text()) == [
        {"targets": ["127.0.0.1:8123"], "labels": {"tenant": "acme", "deployment": "vllm-ft-acme-smollm2-abc123"}}
    ]
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no temporary file is left beside it"
    remove_target(tmp_path, "vllm-ft-acme-smollm2-abc123")
    remove_target(tmp_path, "vllm-ft-acme-smollm2-abc123")  # removing twice is fine
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="deployment name"):
        write_target(tmp_path, "../escape", 1)


def test_keda_query_counts_the_requests_waiting_on_a_deployment(
    prom: LocalPrometheus, server: Served, gate: threading.Event
) -> None:
    # Given a server announced the way the local serving backend announces one
    write_target(prom.targets, DEPLOYMENT, server.port, {"tenant": "acme"})
    up = f'up{{job="inference", deployment="{DEPLOYMENT}", tenant="acme"}}'
    eventually(lambda: value(prom, up) == 1.0, what="Prometheus to scrape the server (without its key)")
    assert eventually(lambda: value(prom, queue_depth_query(DEPLOYMENT)) == 0.0, what="an idle queue")

    # When one request runs (held in its forward pass) and WAITING more arrive behind it
    gate.clear()
    statuses: list[int] = []

    def complete() -> None:
        body = {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "prompt": "Hello", "max_tokens": 2}
        auth = {"Authorization": f"Bearer {SERVER_KEY}"}
        statuses.append(httpx.post(f"{server.url}/v1/completions", json=body, headers=auth, timeout=90).status_code)

    callers = [threading.Thread(target=complete) for _ in range(WAITING + 1)]
    for caller in callers:
        caller.start()
    try:
        # Then KEDA's query, evaluated by Prometheus, reports exactly the requests waiting
        eventually(lambda: value(prom, queue_depth_query(DEPLOYMENT)) == WAITING, what=f"{WAITING} requests waiting")
        assert value(prom, queue_depth_query("some-other-deployment")) is None
    finally:
        gate.set()
        for caller in callers:
            caller.join(90)
    assert statuses == [200] * (WAITING + 1)
    # And the queue drains back to zero once the engine moves again
    eventually(lambda: value(prom, queue_depth_query(DEPLOYMENT)) == 0.0, what="the queue to drain")

    # When the server's target is removed, Prometheus stops scraping it
    remove_target(prom.targets, DEPLOYMENT)
    eventually(lambda: not prom.query(up), what="the target to go")


def test_every_dashboard_expression_runs_in_prometheus(prom: LocalPrometheus, server: Served) -> None:
    write_target(prom.targets, DEPLOYMENT, server.port, {"tenant": "acme"})
    try:
        eventually(lambda: value(prom, f'up{{deployment="{DEPLOYMENT}"}}') == 1.0, what="a scrape")
        for path in DASHBOARDS.glob("*.json"):
            for expr in dashboard_queries(path):
                prom.query(concrete(expr))  # raises with Prometheus' parse error
        # And a panel's query finds the server's series through the dashboard's own selector
        assert value(prom, concrete('sum(model_loaded{deployment=~"$deployment", tenant=~"$tenant"})')) == 1.0
    finally:
        remove_target(prom.targets, DEPLOYMENT)


def test_rendered_config_scrapes_the_local_api_and_targets_folder(tmp_path: Path) -> None:
    config = prometheus.render_config(8123, tmp_path / "targets", scrape_interval_seconds=2)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["control-plane"]["static_configs"] == [{"targets": ["127.0.0.1:8123"]}]
    assert jobs["inference"]["file_sd_configs"][0]["files"] == [str(tmp_path / "targets" / "*.json")]
    assert config["global"]["scrape_interval"] == "2000ms"


def test_runtime_scrapes_its_api_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_server: Any, redis_server: Any
) -> None:
    from functions.local.procs import free_port
    from functions.local.runtime import Platform

    # Given the platform started with LOCAL_PROMETHEUS on, against this session's moto and redis-server
    for name, value_ in {
        "AWS_ENDPOINT_URL": moto_server.url,
        "REDIS_URL": redis_server.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "LOCAL_PROMETHEUS": "true",
        "LOCAL_PROMETHEUS_PORT": "0",
        "LOCAL_PROMETHEUS_DIR": str(tmp_path / "prometheus"),
        "LOCAL_RUNS_DIR": str(tmp_path / "runs"),
    }.items():
        monkeypatch.setenv(name, value_)
    platform = Platform(free_port(), log_dir=None, print_fn=lambda line: None)
    try:
        platform.start()
        assert platform.monitoring is not None
        monitoring = platform.monitoring
        # Then its Prometheus scrapes the API's /metrics
        eventually(
            lambda: value(monitoring, 'up{job="control-plane"}') == 1.0, timeout=40, what="the API to be scraped"
        )
        assert monitoring.targets == tmp_path / "prometheus" / "targets"
    finally:
        platform.stop()
    assert platform.monitoring is None
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{monitoring.url}/-/ready", timeout=2)
