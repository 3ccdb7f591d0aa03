"""The eks backends against a recorded Kubernetes API: the official client's typed APIs (AppsV1Api, CoreV1Api,
CustomObjectsApi) over HTTP to a replay server on 127.0.0.1.

Each test scripts the responses the API server gave (tests/fixtures/k8s, errors as its `Status` objects) and
checks the requests the backend sent: paths, verbs, bodies, the bearer token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.credentials import Credentials

from functions.compute import get_serving_backend, get_training_backend, reset_training_backends
from functions.compute.base import RunState, TrainingSpec, run_name
from functions.compute.eks import EksBackend
from functions.compute.k8s import client as k8s
from functions.compute.k8s import rayjob, serving
from functions.compute.k8s.client import KubeClient, KubeError
from functions.compute.k8s.endpoints import EksServingBackend
from functions.compute.k8s.token import TokenSource, decode
from functions.compute.serving import AdapterSpec, Endpoint, EndpointState, ServingSpec
from functions.core.settings import Settings
from tests.unit.eks_replay import ReplayServer, fixture, status_body

JOB = "ftjob-abcdefghijklmnopqrstuvwx"
RAYJOBS = "/apis/ray.io/v1/namespaces/ministudio/rayjobs"
SERVER = "vllm-base-smollm2-135m-instruct-1a2b3c"
DEPLOYMENTS = "/apis/apps/v1/namespaces/ministudio/deployments"
SERVICES = "/api/v1/namespaces/ministudio/services"
SCALED = "/apis/keda.sh/v1alpha1/namespaces/ministudio/scaledobjects"
SECRETS = "/api/v1/namespaces/ministudio/secrets"
PODS = "/api/v1/namespaces/ministudio/pods"
EVENTS = "/api/v1/namespaces/ministudio/events"
LB_HOST = "k8s-ministud-vllmbase-0a1b2c3d4e-0123456789abcdef.elb.us-east-1.amazonaws.com"
FT_MODEL = f"ft:HuggingFaceTB/SmolLM2-135M-Instruct:acme:v1:{JOB}"
ADAPTER_URI = f"s3://acme-artifacts/artifacts/acme/{JOB}/adapter/"


def exists(kind: str, name: str) -> dict[str, Any]:
    return status_body(409, "AlreadyExists", f'{kind} "{name}" already exists')


def not_found(kind: str, name: str) -> dict[str, Any]:
    return status_body(404, "NotFound", f'{kind} "{name}" not found')


SETTINGS = Settings(
    compute_backend="eks",
    eks_cluster_name="studio",
    trainer_image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/ministudio-trainer:1",
    inference_image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/ministudio-inference:1",
    inference_api_key="server-key-123",
    artifacts_bucket_name="acme-artifacts",
)


@pytest.fixture
def api() -> Iterator[ReplayServer]:
    server = ReplayServer()
    server.start()
    yield server
    server.stop()


def client(api: ReplayServer) -> KubeClient:
    creds = Credentials("AKIDEXAMPLE", "secret", "session")
    return KubeClient.from_endpoint(api.url, TokenSource("studio", "us-east-1", lambda: creds))


def training(api: ReplayServer) -> EksBackend:
    return EksBackend(SETTINGS, client=client(api))


def endpoints(api: ReplayServer) -> EksServingBackend:
    return EksServingBackend(SETTINGS, client=client(api))


def spec() -> TrainingSpec:
    return TrainingSpec(
        job_id=JOB,
        tenant="acme",
        model="HuggingFaceTB/SmolLM2-135M-Instruct",
        training_file="s3://acme-datasets/datasets/acme/file-1/train.jsonl",
        output=f"s3://acme-artifacts/artifacts/acme/{JOB}/",
    )


def serving_spec(**overrides: Any) -> ServingSpec:
    values: dict[str, Any] = {"deployment_id": "dep-123", "name": SERVER, "tenant": "acme"}
    values["model"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    return ServingSpec(**{**values, "min_replicas": 1, "max_replicas": 3, **overrides})


# --- training ----------------------------------------------------------------------------------------------------
def test_submit_creates_the_rayjob_with_a_fresh_eks_token(api: ReplayServer) -> None:
    api.expect("POST", RAYJOBS, 201, fixture("rayjob_created"))
    status = training(api).submit(run_name(JOB), spec())
    api.verify()
    assert status.state is RunState.pending and status.name == JOB
    sent = api.last("POST")
    assert sent.body == rayjob.render(JOB, spec(), SETTINGS)
    assert sent.headers["authorization"].startswith("Bearer k8s-aws-v1.")
    assert sent.headers["content-type"] == "application/json"


def test_requests_carry_a_new_token_once_the_old_nears_expiry(api: ReplayServer) -> None:
    # Given a client whose token was signed with one role session, and a clock
    now = [0.0]
    sessions = iter([Credentials("AKIDFIRST", "secret-1", "s1"), Credentials("AKIDSECOND", "secret-2", "s2")])
    tokens = TokenSource("studio", "us-east-1", lambda: next(sessions), clock=lambda: now[0])
    backend = EksBackend(SETTINGS, client=KubeClient.from_endpoint(api.url, tokens))
    for _ in range(3):
        api.expect("GET", f"{RAYJOBS}/{JOB}", 200, fixture("rayjob_running"))
    # When requests go out at 0 s, 10 min and 14 min
    for at in (0.0, 600.0, 840.0):
        now[0] = at
        backend.status(JOB)
    api.verify()
    # Then the first two reuse the first token, the third carries one signed by the rotated session
    first, second, third = (r.headers["authorization"].removeprefix("Bearer ") for r in api.requests)
    assert first == second != third
    assert "AKIDFIRST" in decode(first) and "AKIDSECOND" in decode(third)


def test_a_redelivered_submit_finds_the_first_rayjob(api: ReplayServer) -> None:
    # Given the RayJob exists: the API server answers 409 to the second create
    api.expect("POST", RAYJOBS, 409, exists("rayjobs.ray.io", JOB))
    api.expect("GET", f"{RAYJOBS}/{JOB}", 200, fixture("rayjob_running"))
    status = training(api).submit(JOB, spec())
    api.verify()
    # Then nothing new starts and the first run's state comes back
    assert status.state is RunState.running and status.backend_id == f"{JOB}-7x2lq"
    assert [r.method for r in api.requests] == ["POST", "GET"]


def test_status_of_an_unknown_run_is_missing(api: ReplayServer) -> None:
    api.expect("GET", f"{RAYJOBS}/{JOB}", 404, not_found("rayjobs.ray.io", JOB))
    assert training(api).status(JOB).state is RunState.missing
    api.verify()


def test_cancel_suspends_the_rayjob_and_marks_it_ours(api: ReplayServer) -> None:
    api.expect("GET", f"{RAYJOBS}/{JOB}", 200, fixture("rayjob_running"))
    api.expect("PATCH", f"{RAYJOBS}/{JOB}", 200, fixture("rayjob_suspended_by_us"))
    backend = training(api)
    backend.cancel(JOB)
    api.verify()
    patch = api.last("PATCH")
    assert patch.headers["content-type"] == "application/merge-patch+json"
    assert patch.body["spec"] == {"suspend": True}
    assert set(patch.body["metadata"]["annotations"]) == {"ministudio.io/cancelled-at"}
    # Once KubeRay has suspended it, the run reads cancelled (and not queued).
    suspended = fixture("rayjob_suspended_by_us")
    suspended["status"]["jobDeploymentStatus"] = "Suspended"
    api.expect("GET", f"{RAYJOBS}/{JOB}", 200, suspended)
    assert backend.status(JOB).state is RunState.cancelled
    api.verify()


def test_cancelling_a_finished_run_changes_nothing(api: ReplayServer) -> None:
    done = fixture("rayjob_running")
    done["status"].update(jobDeploymentStatus="Complete", jobStatus="SUCCEEDED")
    api.expect("GET", f"{RAYJOBS}/{JOB}", 200, done)
    assert training(api).cancel(JOB).state is RunState.succeeded
    api.verify()
    assert [r.method for r in api.requests] == ["GET"]


def test_cancel_deletes_a_rayjob_that_cannot_be_suspended(api: ReplayServer) -> None:
    api.expect("GET", f"{RAYJOBS}/{JOB}", 200, fixture("rayjob_running"))
    refused = status_body(422, "Invalid", 'RayJob.ray.io "x" is invalid: spec.suspend: Forbidden')
    api.expect("PATCH", f"{RAYJOBS}/{JOB}", 422, refused)
    api.expect("DELETE", f"{RAYJOBS}/{JOB}", 200, {"kind": "Status", "status": "Success"})
    assert training(api).cancel(JOB).state is RunState.cancelled
    api.verify()
    assert api.last("DELETE").body["propagationPolicy"] == "Foreground"


def test_logs_come_from_the_newest_submitter_pod(api: ReplayServer) -> None:
    api.expect("GET", PODS, 200, fixture("submitter_pods"))
    api.expect("GET", f"{PODS}/{JOB}-new22/log", 200, "step 10 loss 1.23\nstep 20 loss 1.01\n")
    assert training(api).logs(JOB, tail=2) == "step 10 loss 1.23\nstep 20 loss 1.01\n"
    api.verify()
    assert api.requests[0].query == {"labelSelector": f"batch.kubernetes.io/job-name={JOB}"}
    assert api.requests[1].query == {"tailLines": "2"}


def test_cluster_status_reports_gpus_from_nodes_and_runs_from_rayjobs(api: ReplayServer) -> None:
    api.expect("GET", "/api/v1/nodes", 200, fixture("nodes"))
    api.expect("GET", "/api/v1/pods", 200, fixture("pods_all"))
    api.expect("GET", RAYJOBS, 200, fixture("rayjob_list"))
    status = training(api).cluster_status()
    api.verify()
    assert status["gpu"]["total"] == 2 and status["gpu"]["available"] == 0
    assert status["runs"] == {
        "running": ["ftjob-aaaaaaaaaaaaaaaaaaaaaaaa"],
        "queued": ["ftjob-bbbbbbbbbbbbbbbbbbbbbbbb", "ftjob-dddddddddddddddddddddddd"],
    }
    assert status["notes"] == [] and status["backend"] == "eks" and status["cluster"] == "studio"
    assert api.requests[1].query == {"fieldSelector": "status.phase!=Succeeded,status.phase!=Failed"}
    assert api.requests[2].query == {"labelSelector": "app.kubernetes.io/managed-by=ministudio"}


def test_cluster_status_with_only_namespace_rights_says_what_is_missing(api: ReplayServer) -> None:
    forbidden = status_body(403, "Forbidden", 'nodes is forbidden: User "ministudio-observe" cannot list resource')
    api.expect("GET", "/api/v1/nodes", 403, forbidden)
    api.expect("GET", "/api/v1/pods", 403, forbidden)
    api.expect("GET", PODS, 200, fixture("pods_all"))
    api.expect("GET", RAYJOBS, 200, {"kind": "RayJobList", "items": []})
    status = training(api).cluster_status()
    api.verify()
    assert status["gpu"]["total"] is None and status["gpu"]["requested"] == 2
    (note,) = status["notes"]
    assert note.startswith("listing nodes is forbidden: bind the ClusterRole ministudio-cluster-reader")


def test_cluster_status_with_nodes_but_only_namespace_pods_says_other_namespaces_are_not_counted(
    api: ReplayServer,
) -> None:
    forbidden = status_body(403, "Forbidden", 'pods is forbidden: User "ministudio-api" cannot list resource')
    api.expect("GET", "/api/v1/nodes", 200, fixture("nodes"))
    api.expect("GET", "/api/v1/pods", 403, forbidden)
    api.expect("GET", PODS, 200, fixture("pods_all"))
    api.expect("GET", RAYJOBS, 200, {"kind": "RayJobList", "items": []})
    status = training(api).cluster_status()
    api.verify()
    assert status["gpu"]["total"] == 2
    (note,) = status["notes"]
    assert note.startswith("only pods in namespace ministudio are counted") and "ministudio-cluster-reader" in note


def test_an_unreachable_cluster_is_a_clear_error() -> None:
    dead = ReplayServer()
    url = dead.start()
    dead.stop()  # nothing listens there any more
    creds = Credentials("AKIDEXAMPLE", "secret", "session")
    backend = EksBackend(SETTINGS, client=KubeClient.from_endpoint(url, TokenSource("s", "us-east-1", lambda: creds)))
    with pytest.raises(KubeError, match="unreachable"):
        backend.status(JOB)


def test_a_server_error_says_which_call_failed(api: ReplayServer) -> None:
    api.expect("GET", f"{RAYJOBS}/{JOB}", 500, status_body(500, "InternalError", "etcdserver: request timed out"))
    with pytest.raises(KubeError, match=f"get rayjobs.ray.io ministudio/{JOB} → 500: etcdserver") as raised:
        training(api).status(JOB)
    api.verify()
    assert (raised.value.status, raised.value.reason) == (500, "InternalError")


def test_a_built_in_object_with_an_unknown_field_is_refused_before_it_is_sent(api: ReplayServer) -> None:
    manifest = serving.render_deployment(serving_spec(), SETTINGS)
    manifest["spec"]["replica"] = 2
    with pytest.raises(ValueError, match=r"spec\.replica"):  # the typed API checks the dict against V1Deployment
        client(api).resource(k8s.DEPLOYMENTS, "ministudio").create(manifest)
    assert api.requests == []


# --- serving -----------------------------------------------------------------------------------------------------
def test_deploy_creates_secret_deployment_service_and_scaled_object(api: ReplayServer) -> None:
    api.expect("POST", SECRETS, 201, {"kind": "Secret", "metadata": {"name": serving.SECRET_NAME}})
    api.expect("POST", DEPLOYMENTS, 201, fixture("deployment_starting"))
    api.expect("POST", SERVICES, 201, {"kind": "Service", "metadata": {"name": SERVER}})
    api.expect("POST", SCALED, 201, {"kind": "ScaledObject", "metadata": {"name": SERVER}})
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_starting"))
    api.expect("GET", PODS, 200, fixture("pods_unschedulable"))
    status = endpoints(api).deploy(serving_spec())
    api.verify()
    assert status.state is EndpointState.deploying
    assert status.message is not None and "Insufficient nvidia.com/gpu" in status.message
    posts = [r for r in api.requests if r.method == "POST"]
    assert [p.body["kind"] for p in posts] == ["Secret", "Deployment", "Service", "ScaledObject"]
    assert {p.headers["content-type"] for p in posts} == {"application/json"}
    assert posts[0].body["stringData"] == {"api-key": "server-key-123"}
    assert posts[1].body == serving.render_deployment(serving_spec(), SETTINGS)
    assert posts[2].body == serving.render_service(serving_spec(), SETTINGS)
    assert posts[2].body["spec"]["type"] == "LoadBalancer"
    assert api.requests[-1].query == {"labelSelector": f"ministudio.io/deployment={SERVER}"}


def test_a_redelivered_deploy_keeps_what_exists(api: ReplayServer) -> None:
    # Given everything exists: each create answers 409, the key is re-written, the existing Deployment is read
    api.expect("POST", SECRETS, 409, exists("secrets", serving.SECRET_NAME))
    api.expect("PATCH", f"{SECRETS}/{serving.SECRET_NAME}", 200, {"kind": "Secret"})
    api.expect("POST", DEPLOYMENTS, 409, exists("deployments.apps", SERVER))
    api.expect("POST", SERVICES, 409, exists("services", SERVER))
    api.expect("POST", SCALED, 409, exists("scaledobjects.keda.sh", SERVER))
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_ready"))
    api.expect("GET", f"{SERVICES}/{SERVER}", 200, fixture("service_ready"))
    status = endpoints(api).deploy(serving_spec())
    api.verify()
    assert status.state is EndpointState.ready
    assert status.endpoint is not None and status.endpoint.url == f"http://{LB_HOST}:8000"
    assert api.last("PATCH").body == {"stringData": {"api-key": "server-key-123"}}
    assert not [r for r in api.requests if r.method in ("PUT", "DELETE")]


def test_ready_waits_for_the_load_balancer_hostname_between_two_status_calls(api: ReplayServer) -> None:
    # Given pods that are ready, and a Service whose NLB the controller is still provisioning
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_ready"))
    api.expect("GET", f"{SERVICES}/{SERVER}", 200, fixture("service_pending"))
    api.expect("GET", EVENTS, 200, {"kind": "EventList", "apiVersion": "v1", "items": []})
    backend = endpoints(api)
    first = backend.status(SERVER)
    api.verify()
    # Then it is still deploying, says it waits for the load balancer, and gives no endpoint to route to
    assert (first.state, first.endpoint, first.ready_replicas) == (EndpointState.deploying, None, 1)
    assert first.message == "pods are ready; waiting for the load balancer"
    assert api.requests[-1].query == {"fieldSelector": f"involvedObject.kind=Service,involvedObject.name={SERVER}"}
    # When the controller has written status.loadBalancer.ingress[0].hostname
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_ready"))
    api.expect("GET", f"{SERVICES}/{SERVER}", 200, fixture("service_ready"))
    second = backend.status(SERVER)
    api.verify()
    # Then it is ready, at the NLB's name on the server port (no events read once the hostname is there)
    assert second.state is EndpointState.ready
    assert second.endpoint == Endpoint("http", url=f"http://{LB_HOST}:8000")
    assert [r.path for r in api.requests[3:]] == [f"{DEPLOYMENTS}/{SERVER}", f"{SERVICES}/{SERVER}"]


def test_a_load_balancer_that_fails_to_provision_says_why(api: ReplayServer) -> None:
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_ready"))
    api.expect("GET", f"{SERVICES}/{SERVER}", 200, fixture("service_pending"))
    api.expect("GET", EVENTS, 200, fixture("events_service"))
    status = endpoints(api).status(SERVER)
    api.verify()
    assert status.state is EndpointState.deploying and status.message is not None
    assert "FailedDeployModel" in status.message and "At least one subnet must be specified" in status.message


def test_a_ready_deployment_whose_service_is_gone_is_deploying(api: ReplayServer) -> None:
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_ready"))
    api.expect("GET", f"{SERVICES}/{SERVER}", 404, not_found("services", SERVER))
    status = endpoints(api).status(SERVER)
    api.verify()
    assert status.state is EndpointState.deploying and status.endpoint is None
    assert status.message is not None and "does not exist" in status.message


def test_a_starting_deployment_does_not_read_its_service(api: ReplayServer) -> None:
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_starting"))
    api.expect("GET", PODS, 200, fixture("pods_loading"))
    assert endpoints(api).status(SERVER).state is EndpointState.deploying
    api.verify()


def test_adapter_endpoint_is_the_deployments_endpoint_once_it_has_one(api: ReplayServer) -> None:
    backend = endpoints(api)
    # Ready with its NLB: the adapter is served by the same server, at the same URL
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_ready"))
    api.expect("GET", f"{SERVICES}/{SERVER}", 200, fixture("service_ready"))
    assert backend.adapter_endpoint(SERVER, FT_MODEL) == Endpoint("http", url=f"http://{LB_HOST}:8000")
    # Waiting for the load balancer, or gone: no endpoint
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_ready"))
    api.expect("GET", f"{SERVICES}/{SERVER}", 200, fixture("service_pending"))
    api.expect("GET", EVENTS, 200, {"kind": "EventList", "apiVersion": "v1", "items": []})
    assert backend.adapter_endpoint(SERVER, FT_MODEL) is None
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 404, not_found("deployments.apps", SERVER))
    assert backend.adapter_endpoint(SERVER, FT_MODEL) is None
    api.verify()


def test_status_of_an_unknown_deployment_is_missing(api: ReplayServer) -> None:
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 404, not_found("deployments.apps", SERVER))
    assert endpoints(api).status(SERVER).state is EndpointState.missing
    api.verify()


def test_delete_of_a_missing_deployment_is_missing(api: ReplayServer) -> None:
    api.expect("DELETE", f"{SCALED}/{SERVER}", 404, not_found("scaledobjects.keda.sh", SERVER))
    api.expect("DELETE", f"{SERVICES}/{SERVER}", 404, not_found("services", SERVER))
    api.expect("DELETE", f"{DEPLOYMENTS}/{SERVER}", 404, not_found("deployments.apps", SERVER))
    assert endpoints(api).delete(SERVER).state is EndpointState.missing
    api.verify()


def test_delete_removes_scaler_service_and_deployment_in_the_foreground(api: ReplayServer) -> None:
    api.expect("DELETE", f"{SCALED}/{SERVER}", 200, {"kind": "Status", "status": "Success"})
    api.expect("DELETE", f"{SERVICES}/{SERVER}", 200, {"kind": "Status", "status": "Success"})
    api.expect("DELETE", f"{DEPLOYMENTS}/{SERVER}", 202, fixture("deployment_deleting"))
    assert endpoints(api).delete(SERVER).state is EndpointState.deleting
    api.verify()
    assert {r.body["propagationPolicy"] for r in api.requests} == {"Foreground"}


def test_scale_patches_the_scaled_object_and_moves_replicas_into_the_range(api: ReplayServer) -> None:
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_ready"))  # 1 replica now
    api.expect("PATCH", f"{SCALED}/{SERVER}", 200, {"kind": "ScaledObject"})
    api.expect("PATCH", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_ready"))
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_ready"))
    api.expect("GET", f"{SERVICES}/{SERVER}", 200, fixture("service_ready"))
    endpoints(api).scale(SERVER, 2, 4)
    api.verify()
    # Merge patches on both: a strategic merge (the typed API's default for a Deployment) is refused on a CRD
    assert {r.headers["content-type"] for r in api.requests if r.method == "PATCH"} == {"application/merge-patch+json"}
    patches = [r.body for r in api.requests if r.method == "PATCH"]
    assert patches[0] == {"spec": {"minReplicaCount": 2, "maxReplicaCount": 4}}
    assert patches[1]["spec"] == {"replicas": 2}
    assert patches[1]["metadata"]["annotations"] == {
        "ministudio.io/min-replicas": "2",
        "ministudio.io/max-replicas": "4",
    }


def test_add_adapter_records_it_conditionally_and_retries_a_lost_race(api: ReplayServer) -> None:
    starting = fixture("deployment_starting")  # no adapters yet, resourceVersion 51234
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, starting)
    api.expect("PATCH", f"{DEPLOYMENTS}/{SERVER}", 409, status_body(409, "Conflict", "the object has been modified"))
    api.expect(
        "GET",
        f"{DEPLOYMENTS}/{SERVER}",
        200,
        {**starting, "metadata": {**starting["metadata"], "resourceVersion": "51240"}},
    )
    api.expect("PATCH", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_ready"))
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_ready"))
    api.expect("GET", f"{SERVICES}/{SERVER}", 200, fixture("service_ready"))
    status = endpoints(api).add_adapter(SERVER, AdapterSpec(FT_MODEL, ADAPTER_URI, "acme"))
    api.verify()
    assert status.adapters == (FT_MODEL,)
    patches = [r.body for r in api.requests if r.method == "PATCH"]
    assert [p["metadata"]["resourceVersion"] for p in patches] == ["51234", "51240"]
    assert json.loads(patches[-1]["metadata"]["annotations"]["ministudio.io/adapters"]) == [FT_MODEL]


def test_an_adapter_the_servers_would_not_find_is_refused(api: ReplayServer) -> None:
    elsewhere = AdapterSpec(FT_MODEL, "s3://other-bucket/somewhere/adapter/", "acme")
    with pytest.raises(ValueError, match="servers resolve it at s3://acme-artifacts/artifacts/acme/"):
        endpoints(api).add_adapter(SERVER, elsewhere)
    assert api.requests == []


def test_adding_an_adapter_to_a_missing_deployment_is_a_lookup_error(api: ReplayServer) -> None:
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 404, not_found("deployments.apps", SERVER))
    with pytest.raises(LookupError, match=SERVER):
        endpoints(api).add_adapter(SERVER, AdapterSpec(FT_MODEL, ADAPTER_URI, "acme"))
    api.verify()


def test_remove_adapter_forgets_it(api: ReplayServer) -> None:
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_ready"))
    api.expect("PATCH", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_starting"))
    api.expect("GET", f"{DEPLOYMENTS}/{SERVER}", 200, fixture("deployment_ready"))
    api.expect("GET", f"{SERVICES}/{SERVER}", 200, fixture("service_ready"))
    endpoints(api).remove_adapter(SERVER, FT_MODEL)
    api.verify()
    assert api.last("PATCH").body["metadata"]["annotations"] == {"ministudio.io/adapters": "[]"}


# --- wiring ------------------------------------------------------------------------------------------------------
def test_the_factory_gives_eks_backends_that_reach_the_cluster_only_when_used() -> None:
    try:
        trainer, server = get_training_backend(SETTINGS), get_serving_backend(SETTINGS)
        assert isinstance(trainer, EksBackend) and isinstance(server, EksServingBackend)
        assert trainer._client is None and server._client is None  # no DescribeCluster at creation
    finally:
        reset_training_backends()


def test_the_api_and_the_backend_registry_do_not_import_kubernetes() -> None:
    import subprocess
    import sys

    code = (
        "import sys, functions.api.app, functions.compute, functions.compute.serving, functions.workers.dispatch; "
        "assert not [m for m in sys.modules if m == 'kubernetes' or m.startswith('kubernetes.')], 'kubernetes imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
