"""Deploy errors worth another try go back to SQS (the worker reports the message as failed, so it is redelivered);
refusals fail the deployment at once and remove what the attempt created. Driven through the dispatch worker's
Lambda handler, with a backend double that fails the way AWS, Kubernetes and HTTP clients do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import mongomock
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from kubernetes.client.exceptions import ApiException

from functions.compute import BackendUnavailable
from functions.compute.k8s.client import KubeError
from functions.compute.sagemaker_client import SageMakerBackendError
from functions.compute.serving import EndpointState, ServingSpec
from functions.core.models import DeploymentStatus, Tenant, now
from functions.core.settings import Settings
from functions.deployments import faults, lifecycle, service
from functions.local.lambda_context import new_context
from functions.store.cache import Cache
from functions.store.mongo import Store
from functions.workers import dispatch as worker
from tests.unit.test_deployments_logic import BASE, Recorder, Sent

EVENT = Path(__file__).resolve().parents[2] / "events" / "sqs_dispatch_job.json"


def aws(code: str, http: int = 400, operation: str = "CreateEndpoint") -> ClientError:
    error = {"Error": {"Code": code, "Message": f"{code} says no"}, "ResponseMetadata": {"HTTPStatusCode": http}}
    return ClientError(error, operation)  # type: ignore[arg-type]


def wrapped(outer: Exception, inner: BaseException) -> Exception:
    outer.__cause__ = inner  # as `raise outer from inner` leaves it
    return outer


def http_status(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://10.0.0.1/v1/load_lora_adapter")
    return httpx.HTTPStatusError("refused", request=request, response=httpx.Response(status, request=request))


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (aws("ThrottlingException"), True),
        (aws("InternalFailure", 500), True),
        (aws("ServiceUnavailable", 503), True),
        (aws("ValidationException"), False),
        (aws("ResourceLimitExceeded"), False),  # a quota: another try finds the same quota
        (wrapped(SageMakerBackendError("CreateEndpoint: rate exceeded"), aws("ThrottlingException")), True),
        (wrapped(SageMakerBackendError("CreateModel: bad image"), aws("ValidationException")), False),
        (SageMakerBackendError("SAGEMAKER_EXECUTION_ROLE_ARN is not set"), False),
        (EndpointConnectionError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com"), True),
        (ReadTimeoutError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com"), True),
        (KubeError("create deployment", 429, {"message": "slow down"}), True),
        (KubeError("create deployment", 503, {"message": "etcd leader changed"}), True),
        (KubeError("create deployment", 403, {"message": "forbidden"}), False),
        (KubeError("create deployment", 422, {"message": "spec.replicas: Invalid value"}), False),
        (KubeError("eks:DescribeCluster", 0, "EKS_CLUSTER_NAME is not set"), False),
        (wrapped(KubeError("create deployment", 0, "unreachable"), ConnectionRefusedError()), True),
        (ApiException(status=500, reason="Internal Server Error"), True),
        (ApiException(status=409, reason="Conflict"), False),
        (httpx.ConnectError("connection refused"), True),
        (http_status(502), True),
        (http_status(400), False),
        (aiohttp.ClientConnectionError("reset"), True),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (OSError("no route to host"), True),
        (FileNotFoundError("ministudio-serve"), False),  # a missing binary stays missing
        (ValueError("gpu_count must be between 0 and 8"), False),
        (BackendUnavailable("COMPUTE_BACKEND='gke' is not a known backend"), False),
        (RuntimeError("unexpected"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_which_backend_errors_are_worth_another_try(error: Exception, retried: bool) -> None:
    assert faults.transient(error) is retried


class Flaky(Recorder):
    """Creates part of the deployment, then fails with the next queued error (AWS fails half way like this: the
    model and config exist, the endpoint does not). `delete_errors` fail the clean-up the same way."""

    def __init__(self, errors: list[Exception], delete_errors: list[Exception] | None = None) -> None:
        super().__init__()
        self.errors = errors
        self.delete_errors = delete_errors or []

    def deploy(self, spec: ServingSpec) -> Any:
        status = super().deploy(spec)
        if self.errors:
            raise self.errors.pop(0)
        return status

    def delete(self, name: str) -> Any:
        if self.delete_errors:
            self.calls.append(("delete refused", name))
            raise self.delete_errors.pop(0)
        return super().delete(name)


@pytest.fixture
def deploying(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A base deployment created through the service; `deliver(backend)` hands its dispatch message to the worker's
    Lambda handler the way SQS would, again while the handler reports it failed (at most maxReceiveCount times),
    and says how many receives it took (6: the DLQ)."""
    store, cache, settings, sent = Store(mongomock.MongoClient()["t"]), Cache(None), Settings(), Sent()
    store.tenants.create(Tenant(id="acme"))
    made = service.deploy_base(store, cache, sent, settings, Tenant(id="acme"), BASE, service.Sizing())  # type: ignore[arg-type]
    monkeypatch.setattr(worker, "get_store", lambda: store)
    monkeypatch.setattr(worker, "get_cache", lambda: cache)
    monkeypatch.setattr(worker, "get_settings", lambda: settings)
    event = json.loads(EVENT.read_text())
    event["Records"][0]["body"] = json.dumps({"deployment_id": made.id, "action": "deploy"})

    def deliver(backend: Recorder) -> int:
        monkeypatch.setattr(worker, "get_serving_backend", lambda _: backend)
        for receive in range(1, 6):
            try:
                answer = worker.handler(event, new_context("dispatch", 60))
            except BatchProcessingError:  # every record of the batch failed: Lambda's error, all are redelivered
                continue
            if not answer["batchItemFailures"]:
                return receive
        return 6  # off to the DLQ

    return store, made, deliver


def test_a_throttled_deploy_goes_back_to_sqs_and_deploys_once(deploying: Any) -> None:
    store, made, deliver = deploying
    backend = Flaky([aws("ThrottlingException"), wrapped(KubeError("create service", 0, "timed out"), TimeoutError())])
    # Given a backend that throttles, then times out, then deploys
    receives = deliver(backend)
    # Then the message was received three times, one server exists, nothing was deleted, and it is on its way
    assert receives == 3
    assert backend.calls == [("deploy", made.name)] * 3 and list(backend.servers) == [made.name]
    assert store.deployments.get(made.id).status == DeploymentStatus.deploying
    backend.servers[made.name] = EndpointState.ready
    ready = lifecycle.refresh(store, Cache(None), backend, Settings(), store.deployments.get(made.id))
    assert ready.status == DeploymentStatus.ready


def test_a_refused_deploy_fails_at_once_and_removes_what_it_created(deploying: Any) -> None:
    store, made, deliver = deploying
    refused = SageMakerBackendError("CreateEndpoint: ml.g5.48xlarge is not supported")
    refusal = wrapped(refused, aws("ValidationException"))
    backend = Flaky([refusal])
    assert deliver(backend) == 1  # consumed: no redelivery can change the answer
    failed = store.deployments.get(made.id)
    assert failed.status == DeploymentStatus.failed and "ml.g5.48xlarge is not supported" in failed.error["message"]
    assert backend.calls == [("deploy", made.name), ("delete", made.name)] and not backend.servers


def test_a_clean_up_that_is_throttled_is_retried_before_the_deployment_fails(deploying: Any) -> None:
    store, made, deliver = deploying
    backend = Flaky([ValueError("no such model"), ValueError("no such model")], delete_errors=[aws("Throttling")])
    assert deliver(backend) == 2
    assert backend.calls == [
        ("deploy", made.name),
        ("delete refused", made.name),  # still deploying here: the record does not claim what is not done
        ("deploy", made.name),
        ("delete", made.name),
    ]
    assert store.deployments.get(made.id).status == DeploymentStatus.failed and not backend.servers


def test_the_reconcilers_second_try_that_is_refused_fails_and_cleans_up(
    deploying: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, made, deliver = deploying
    # Given a deploy whose messages all went to the DLQ (the backend never answered) ...
    assert deliver(Flaky([ConnectionResetError()] * 5)) == 6
    assert store.deployments.get(made.id).status == DeploymentStatus.deploying
    # ... when the reconciler, a while later, finds no server and creates it, and the backend refuses for good
    backend = Flaky([aws("ValidationException")])
    later = now() + Settings().reconcile_stale_seconds + 1
    monkeypatch.setattr(lifecycle, "now", lambda: later)
    after = lifecycle.refresh(store, Cache(None), backend, Settings(), store.deployments.get(made.id))
    # Then it fails with the reason, and nothing of it is left
    assert after.status == DeploymentStatus.failed and "ValidationException" in (after.error or {})["message"]
    assert backend.calls == [("deploy", made.name), ("delete", made.name)] and not backend.servers
