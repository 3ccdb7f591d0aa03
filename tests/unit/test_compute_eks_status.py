"""How the eks backend reads the cluster: RayJob status → RunState, Deployment + pods → EndpointStatus, and
nodes + pods → capacity. Inputs are objects as the API server returns them (tests/fixtures/k8s)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from functions.compute.base import RunState
from functions.compute.k8s import capacity, rayjob, serving, serving_status
from functions.compute.serving import EndpointState
from tests.unit.eks_replay import fixture

NAME = "ftjob-abcdefghijklmnopqrstuvwx"
SERVER = "vllm-base-smollm2-135m-instruct-1a2b3c"
OURS = {"ministudio.io/cancelled-at": "2026-11-27T10:20:00+00:00"}


def rayjob_with(
    deployment: str | None, ray: str | None, annotations: dict[str, str] | None = None, **extra: Any
) -> Any:
    obj = copy.deepcopy(fixture("rayjob_running"))
    status = {"jobId": f"{NAME}-7x2lq", **extra}
    if deployment is not None:
        status["jobDeploymentStatus"] = deployment
    if ray is not None:
        status["jobStatus"] = ray
    obj["status"] = status
    if annotations:
        obj["metadata"]["annotations"] = annotations
    return obj


@pytest.mark.parametrize(
    ("deployment", "ray", "annotations", "expected"),
    [
        # Before Ray has a terminal word, KubeRay's deployment status decides.
        (None, None, None, RunState.pending),  # just created: the operator has not looked yet
        ("", "", None, RunState.pending),
        ("Initializing", "", None, RunState.pending),  # Ray cluster starting, often waiting for a GPU node
        ("Waiting", "", None, RunState.pending),
        ("Retrying", "", None, RunState.pending),
        ("Running", "PENDING", None, RunState.pending),  # submitted, driver not started
        ("Running", "", None, RunState.running),
        ("Running", "RUNNING", None, RunState.running),
        ("Complete", "SUCCEEDED", None, RunState.succeeded),
        ("Complete", "FAILED", None, RunState.failed),
        ("Complete", "STOPPED", None, RunState.cancelled),
        ("Complete", "", None, RunState.failed),  # finished, Ray's answer lost with the cluster
        ("Failed", "FAILED", None, RunState.failed),
        ("Failed", "RUNNING", None, RunState.failed),  # the operator failed it (deadline) while Ray still ran it
        ("ValidationFailed", "", None, RunState.failed),
        ("Running", "SUCCEEDED", None, RunState.succeeded),  # Ray's terminal word wins over a stale operator state
        # Suspended by us (cancel) reads cancelled; suspended by an admission controller (Kueue) is only queued.
        ("Suspending", "RUNNING", OURS, RunState.cancelled),
        ("Suspended", "", OURS, RunState.cancelled),
        ("Suspending", "RUNNING", None, RunState.pending),
        ("Suspended", "", None, RunState.pending),
        ("Failed", "FAILED", OURS, RunState.cancelled),  # a cancel that surfaced as a failure
        ("SomethingNewer", "", None, RunState.running),  # an unknown, newer status: keep polling, never terminal
    ],
)
def test_every_rayjob_status_maps_to_a_run_state(
    deployment: str | None, ray: str | None, annotations: dict[str, str] | None, expected: RunState
) -> None:
    status = rayjob.to_status(NAME, rayjob_with(deployment, ray, annotations))
    assert status.state is expected
    assert status.name == NAME
    assert status.backend_id == f"{NAME}-7x2lq"


def test_a_failed_rayjob_says_why() -> None:
    obj = rayjob_with("Failed", "FAILED", reason="AppFailed", message="Job entrypoint command failed with exit code 1")
    assert rayjob.to_status(NAME, obj).message == "AppFailed: Job entrypoint command failed with exit code 1"


def test_a_rayjob_over_its_deadline_names_the_setting() -> None:
    obj = rayjob_with("Failed", "RUNNING", reason="DeadlineExceeded", message="The RayJob has passed the deadline")
    status = rayjob.to_status(NAME, obj)
    assert status.state is RunState.failed
    assert status.message is not None and "JOB_MAX_RUNTIME_SECONDS" in status.message
    assert "passed the deadline" in status.message


def test_the_recorded_running_rayjob_is_running() -> None:
    status = rayjob.to_status(NAME, fixture("rayjob_running"))
    assert (status.state, status.message, status.backend_id) == (RunState.running, None, f"{NAME}-7x2lq")


# --- Deployment (+ Service) → EndpointStatus --------------------------------------------------------------------
LB_HOST = "k8s-ministud-vllmbase-0a1b2c3d4e-0123456789abcdef.elb.us-east-1.amazonaws.com"


def test_a_ready_deployment_with_its_load_balancer_gives_the_nlb_url_and_adapters() -> None:
    pods_ready = serving_status.to_status(SERVER, fixture("deployment_ready"), [])
    assert pods_ready.state is EndpointState.ready and pods_ready.endpoint is None  # the URL is the Service's
    status = serving_status.with_load_balancer(pods_ready, fixture("service_ready"))
    assert status.state is EndpointState.ready
    assert (status.replicas, status.ready_replicas) == (1, 1)
    assert status.endpoint is not None and status.endpoint.kind == "http"
    assert status.endpoint.url == f"http://{LB_HOST}:8000"
    assert status.adapters == (f"ft:HuggingFaceTB/SmolLM2-135M-Instruct:acme:v1:{NAME}",)
    assert status.backend_id == "0d1b7c5e-3a0e-4f9e-8d8e-5e0f6a7b8c9d"


def test_ready_pods_without_a_load_balancer_hostname_are_still_deploying() -> None:
    pods_ready = serving_status.to_status(SERVER, fixture("deployment_ready"), [])
    # The controller has not written status.loadBalancer.ingress yet: no endpoint, and the message says why
    waiting = serving_status.with_load_balancer(pods_ready, fixture("service_pending"))
    assert (waiting.state, waiting.endpoint) == (EndpointState.deploying, None)
    assert waiting.message == "pods are ready; waiting for the load balancer"
    assert waiting.ready_replicas == 1
    # ... with the controller's newest warning about the Service, when it has one
    events = fixture("events_service")["items"]
    failing = serving_status.with_load_balancer(pods_ready, fixture("service_pending"), events)
    assert failing.message is not None
    assert failing.message.startswith("pods are ready; waiting for the load balancer (FailedDeployModel: ")
    assert "At least one subnet must be specified" in failing.message
    # A Service that is gone, or that is not a LoadBalancer (made before the NLB), is named as the cause
    gone = serving_status.with_load_balancer(pods_ready, None)
    assert gone.state is EndpointState.deploying and gone.message is not None and "does not exist" in gone.message
    cluster_ip = fixture("service_pending")
    cluster_ip["spec"]["type"] = "ClusterIP"
    old = serving_status.with_load_balancer(pods_ready, cluster_ip)
    assert old.state is EndpointState.deploying and old.message is not None and "is ClusterIP" in old.message


def test_the_load_balancer_does_not_change_a_deployment_that_is_not_ready() -> None:
    starting = serving_status.to_status(SERVER, fixture("deployment_starting"), fixture("pods_unschedulable")["items"])
    assert serving_status.with_load_balancer(starting, fixture("service_ready")) == starting
    deleting = serving_status.to_status(SERVER, fixture("deployment_deleting"), [])
    assert serving_status.with_load_balancer(deleting, None) == deleting


def test_load_balancer_url_reads_the_first_ingress_hostname_and_the_http_port() -> None:
    assert serving.load_balancer_url(fixture("service_ready")) == f"http://{LB_HOST}:8000"
    assert serving.load_balancer_url(fixture("service_pending")) is None
    assert serving.load_balancer_url(None) is None
    ip_only = fixture("service_ready")
    ip_only["status"]["loadBalancer"]["ingress"] = [{"ip": "10.0.3.7"}]
    assert serving.load_balancer_url(ip_only) is None  # an NLB always has a hostname: an IP alone is not ours


def test_a_starting_deployment_is_deploying_and_says_what_it_waits_for() -> None:
    loading = serving_status.to_status(SERVER, fixture("deployment_starting"), fixture("pods_loading")["items"])
    assert (loading.state, loading.message, loading.endpoint) == (EndpointState.deploying, "starting", None)
    waiting = serving_status.to_status(SERVER, fixture("deployment_starting"), fixture("pods_unschedulable")["items"])
    assert waiting.state is EndpointState.deploying
    assert waiting.message is not None and waiting.message.startswith("Unschedulable: 0/2 nodes are available")
    assert "Insufficient nvidia.com/gpu" in waiting.message


def test_a_deployment_that_cannot_pull_its_image_fails_without_waiting_for_the_deadline() -> None:
    status = serving_status.to_status(SERVER, fixture("deployment_starting"), fixture("pods_image_pull")["items"])
    assert status.state is EndpointState.failed
    assert status.message is not None and status.message.startswith("ImagePullBackOff: Back-off pulling image")


def test_a_deployment_past_its_progress_deadline_fails() -> None:
    status = serving_status.to_status(SERVER, fixture("deployment_deadline"), fixture("pods_unschedulable")["items"])
    assert status.state is EndpointState.failed
    assert status.message is not None and "Insufficient nvidia.com/gpu" in status.message


def test_scaled_to_zero_is_idle_only_where_zero_was_allowed() -> None:
    asleep = fixture("deployment_scaled_to_zero")
    assert serving_status.to_status(SERVER, asleep, []).state is EndpointState.idle
    # No replica answers behind its NLB while it sleeps: nothing is routed there until a held request wakes it
    idle = serving_status.with_load_balancer(serving_status.to_status(SERVER, asleep, []), fixture("service_ready"))
    assert idle.state is EndpointState.idle and idle.endpoint is None
    asleep["metadata"]["annotations"]["ministudio.io/min-replicas"] = "1"
    assert serving_status.to_status(SERVER, asleep, []).state is EndpointState.deploying


def test_a_deployment_being_deleted_is_deleting() -> None:
    assert serving_status.to_status(SERVER, fixture("deployment_deleting"), []).state is EndpointState.deleting


# --- capacity ----------------------------------------------------------------------------------------------------
def test_capacity_is_allocatable_of_usable_nodes_minus_requests_of_pods_holding_them() -> None:
    # Given 2 system nodes and 2 ready GPU nodes (a cordoned and a NotReady GPU node give nothing), a trainer
    # head and a vLLM server (GPU as a limit only) each holding a GPU, a finished and an unscheduled pod
    summary = capacity.summarize(fixture("nodes")["items"], fixture("pods_all")["items"])
    # Then both GPUs are taken, and CPU/memory free are allocatable minus what each node's pods request
    assert summary["gpu"] == {
        "total": 2,
        "available": 0,
        "requested": 2,
        "nodes": [
            {"name": "ip-10-0-2-20.ec2.internal", "instance_type": "g6.xlarge", "total": 1, "used": 1},
            {"name": "ip-10-0-2-21.ec2.internal", "instance_type": "g6.xlarge", "total": 1, "used": 1},
        ],
    }
    assert summary["cpu"] == {"total": 11.7, "available": 5.575, "requested": 6.125}
    assert summary["memory"] == {
        "total_bytes": 45_997_850_624,  # 2 * 7291400Ki + 2 * 15168488Ki
        "available_bytes": 20_154_646_528,
        "requested_bytes": 25_843_204_096,  # 70Mi + 2 * 12Gi
    }


def test_capacity_without_node_access_reports_requests_only() -> None:
    summary = capacity.summarize(None, fixture("pods_all")["items"])
    assert summary["gpu"] == {"total": None, "available": None, "requested": 2, "nodes": []}
    assert summary["cpu"]["total"] is None and summary["cpu"]["requested"] == 6.125


def test_an_init_container_larger_than_the_app_sets_the_pods_request() -> None:
    pod = {
        "spec": {
            "containers": [{"resources": {"requests": {"cpu": "250m"}}}, {"resources": {"requests": {"cpu": "250m"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}],
        }
    }
    requests = capacity.pod_requests(pod)
    assert (float(requests["cpu"]), int(requests["memory"])) == (2.0, 1024**3)
