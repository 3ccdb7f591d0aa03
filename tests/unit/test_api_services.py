"""The rules that routes used to hold, called directly as plain functions (the routes only translate HTTP now):
scaling, usage totals, OpenAI's `method` on job creation, the generic repository and list page, and the Lambda
entry point's lazy app."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import mongomock
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from functions.api.metrics import instrument
from functions.api.schemas import ListPage
from functions.api.schemas_jobs import ModelOut
from functions.compute.serving import Endpoint, EndpointState, EndpointStatus
from functions.core.errors import Conflict, InvalidRequest
from functions.core.models import Dataset, DatasetStatus, Deployment, DeploymentStatus, InferenceLog, Tenant
from functions.core.settings import Settings
from functions.deployments import service, usage
from functions.jobs import service as jobs
from functions.store.cache import Cache
from functions.store.mongo import Store

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


class Scaler:
    """Serving backend double for scaling: remembers the bounds it was given, reports the server ready."""

    def __init__(self) -> None:
        self.scaled: list[tuple[str, int, int]] = []

    def scale(self, name: str, min_replicas: int, max_replicas: int) -> EndpointStatus:
        self.scaled.append((name, min_replicas, max_replicas))
        return EndpointStatus(name, EndpointState.ready, max_replicas, 1, Endpoint(kind="http", url="http://s"), ())


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def send_deployment(self, deployment_id: str, action: str) -> None:
        self.messages.append((deployment_id, action))

    def send_dispatch(self, job_id: str, action: str = "start") -> None:
        self.messages.append((job_id, action))


@pytest.fixture
def store() -> Store:
    return Store(mongomock.MongoClient()["t"])


def _deployment(store: Store, status: DeploymentStatus, dedicated: bool = True, **fields: Any) -> Deployment:
    made = Deployment(
        id=f"dep-{status.value}-{dedicated}",
        client_code="acme",
        model=BASE,
        base_model=BASE,
        kind="base",
        dedicated=dedicated,
        name="srv",
        backend="local",
        status=status,
        **fields,
    )
    return store.deployments.insert(made)


def _scale(store: Store, backend: Scaler, deployment_id: str, low: int | None, high: int | None) -> Deployment:
    return service.scale(store, Cache(None), backend, Settings(), "acme", deployment_id, low, high)  # type: ignore[arg-type]


def test_scaling_keeps_a_bound_left_out_and_tells_the_backend(store: Store) -> None:
    live = _deployment(store, DeploymentStatus.ready, min_replicas=1, max_replicas=2)
    backend = Scaler()
    scaled = _scale(store, backend, live.id, None, 4)
    assert backend.scaled == [("srv", 1, 4)]
    assert (scaled.min_replicas, scaled.max_replicas) == (1, 4)
    stored = store.deployments.get(live.id)
    assert stored is not None and (stored.min_replicas, stored.max_replicas) == (1, 4)


def test_scaling_refuses_shared_adapters_dead_deployments_and_bad_bounds(store: Store) -> None:
    backend = Scaler()
    rider = _deployment(store, DeploymentStatus.ready, dedicated=False)
    with pytest.raises(Conflict, match="dedicated: true"):
        _scale(store, backend, rider.id, 1, 2)
    failed = _deployment(store, DeploymentStatus.failed)
    with pytest.raises(Conflict, match="is failed"):
        _scale(store, backend, failed.id, 1, 2)
    live = _deployment(store, DeploymentStatus.ready)
    with pytest.raises(InvalidRequest) as caught:
        _scale(store, backend, live.id, 3, 2)
    assert caught.value.param == "max_replicas"
    assert backend.scaled == []  # nothing refused reached the backend


def test_usage_totals_per_model_and_overall_in_the_window(store: Store) -> None:
    def call(model: str, at: int, prompt: int, completion: int, status: int = 200, latency: float = 10.0) -> None:
        store.inference_logs.add(
            InferenceLog(
                id=f"log-{model}-{at}",
                client_code="acme",
                model=model,
                route="/v1/chat/completions",
                status_code=status,
                prompt_tokens=prompt,
                completion_tokens=completion,
                latency_ms=latency,
                created_at=at,
            )
        )

    call("a", 100, 3, 4, latency=10.0)
    call("a", 110, 1, 0, status=502, latency=20.0)
    call("b", 120, 5, 5)
    call("b", 300, 100, 100)  # after the window
    report = usage.usage(store, "acme", 100, 200)
    assert [(r.model, r.requests, r.errors, r.total_tokens, r.average_latency_ms) for r in report.data] == [
        ("a", 2, 1, 8, 15.0),
        ("b", 1, 0, 10, 10.0),
    ]
    assert (report.requests, report.prompt_tokens, report.completion_tokens, report.total_tokens) == (3, 9, 9, 18)
    with pytest.raises(InvalidRequest) as caught:
        usage.usage(store, "acme", 200, 200)
    assert caught.value.param == "end_time"


def _job(store: Store, **asked: Any) -> Any:
    store.datasets.insert_once(
        Dataset(
            id="file-1",
            client_code="acme",
            filename="t.jsonl",
            purpose="fine-tune",
            bucket="b",
            s3_key="k",
            bytes=1,
            source="api",
            status=DatasetStatus.validated,
            validation={"examples": 20},
        )
    )
    job, _ = jobs.create_job(store, Sent(), Settings(), Tenant(id="acme"), model=BASE, training_file="file-1", **asked)  # type: ignore[arg-type]
    return job


def test_openai_method_hyperparameters_win_and_other_methods_are_refused(store: Store) -> None:
    job = _job(
        store, hyperparameters_asked={"n_epochs": 2}, method="supervised", method_hyperparameters={"n_epochs": 3}
    )
    assert job.hyperparameters["n_epochs"] == 3
    with pytest.raises(InvalidRequest) as caught:
        _job(store, method="dpo")
    assert caught.value.param == "method.type"
    with pytest.raises(InvalidRequest) as caught:
        _job(store, integrations=[{"type": "wandb"}])
    assert caught.value.param == "integrations"


def test_repositories_page_typed_records_and_store_documents_as_written(store: Store) -> None:
    made = [_deployment(store, status) for status in (DeploymentStatus.pending, DeploymentStatus.ready)]
    first = store.deployments.page("acme", None, 1)
    assert [d.id for d in first.data] == [made[1].id] and first.has_more
    assert isinstance(first.data[0], Deployment) and first.items[0]["_id"] == made[1].id  # raw documents kept
    rest = store.deployments.page("acme", first.data[-1].id, 1)
    assert [d.id for d in rest.data] == [made[0].id] and not rest.has_more
    assert store.deployments.col.find_one({"_id": made[0].id}) == {**made[0].doc()}
    assert store.deployments.get(made[0].id, "globex") is None  # another tenant's record reads as missing
    moved = store.deployments.transition(made[0].id, ["pending"], "deploying")
    assert moved is not None and moved.status == DeploymentStatus.deploying
    assert store.deployments.transition(made[0].id, ["pending"], "failed") is None  # not from where it is now


def test_a_list_page_names_its_ends_and_an_empty_files_page_uses_empty_strings() -> None:
    models = [ModelOut(id=i, created=0, owned_by="o") for i in ("m1", "m2", "m3")]
    page = ListPage[ModelOut].of(models, has_more=True)
    assert page.model_dump() | {"data": None} == {
        "object": "list",
        "data": None,
        "has_more": True,
        "first_id": "m1",
        "last_id": "m3",
    }
    assert (ListPage[ModelOut].of([]).first_id, ListPage[ModelOut].of([], empty_id="").last_id) == (None, "")


def test_metrics_middleware_counts_each_request_once_even_if_instrumented_twice() -> None:
    app = FastAPI()
    app.add_api_route("/ping", lambda: {"ok": True})
    assert instrument(instrument(app)) is app
    with TestClient(app) as client:
        client.get("/ping")
        scraped = client.get("/metrics").text
    assert 'api_requests_total{endpoint="/ping",method="GET",status="200"} 1.0' in scraped


def test_importing_the_lambda_handler_builds_no_routes_and_the_snapshot_hook_builds_them() -> None:
    code = (
        "import sys\nimport functions.api.handler as h\n"
        "print('functions.api.routes.jobs' in sys.modules)\n"
        "h._warm()\nprint('functions.api.routes.jobs' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    answers = [line for line in out.stdout.splitlines() if line in ("True", "False")]  # log lines go to stdout too
    assert answers == ["False", "True"], out.stdout + out.stderr
