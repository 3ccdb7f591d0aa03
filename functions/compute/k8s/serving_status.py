"""How a vLLM deployment's objects read as an `EndpointStatus`: the Deployment and its pods say whether the servers
are up (and if not, why), the Service says where they answer (serving.py renders both).

A deployment whose pods are ready is still `deploying` until the AWS Load Balancer Controller has written the
Service's NLB hostname; the message then says it waits for the load balancer, with the controller's latest warning
about the Service when it has one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from functions.compute.k8s.serving import ANNOTATION_ADAPTERS, ANNOTATION_MIN, load_balancer_url
from functions.compute.serving import Endpoint, EndpointState, EndpointStatus

WAITING_FOR_LOAD_BALANCER = "pods are ready; waiting for the load balancer"
# Waiting reasons that will not fix themselves: the deployment is failed without waiting for the ready timeout.
_FATAL_WAITING = {"ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}


def to_status(name: str, deployment: dict[str, Any], pods: list[dict[str, Any]]) -> EndpointStatus:
    """The Deployment's side: `ready` here means its pods are (`idle`: it sleeps at zero, as allowed); the endpoint
    comes from the Service, through `with_load_balancer`."""
    meta = deployment.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    status = deployment.get("status") or {}
    wanted = int((deployment.get("spec") or {}).get("replicas") or 0)
    replicas, ready = int(status.get("replicas") or 0), int(status.get("readyReplicas") or 0)
    adapters = tuple(json.loads(annotations.get(ANNOTATION_ADAPTERS) or "[]"))
    base = EndpointStatus(
        name,
        EndpointState.deploying,
        replicas=replicas,
        ready_replicas=ready,
        adapters=adapters,
        backend_id=meta.get("uid"),
    )
    if meta.get("deletionTimestamp"):
        return replace(base, state=EndpointState.deleting, message="being deleted")
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    progressing = conditions.get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        why = _pod_problem(pods) or progressing.get("message") or "the rollout did not progress"
        return replace(base, state=EndpointState.failed, message=why)
    fatal = _pod_problem(pods, fatal_only=True)
    if fatal and not ready:
        return replace(base, state=EndpointState.failed, message=fatal)
    asleep = wanted == 0 and replicas == 0 and int(annotations.get(ANNOTATION_MIN) or 1) == 0
    if ready >= 1:
        return replace(base, state=EndpointState.ready)
    if asleep:  # KEDA scaled an idle zero-minimum deployment to zero: idle, woken by requests held for it
        return replace(base, state=EndpointState.idle, message="scaled to zero: the next request wakes it")
    failure = conditions.get("ReplicaFailure") or {}
    why = _pod_problem(pods) or (failure.get("message") if failure.get("status") == "True" else None) or "starting"
    return replace(base, message=why)


def with_load_balancer(
    status: EndpointStatus, service: dict[str, Any] | None, events: Sequence[dict[str, Any]] = ()
) -> EndpointStatus:
    """A deployment whose pods are ready is `ready` only once its Service has a load balancer hostname; until then it
    is `deploying` and says so (with the controller's latest warning about the Service, if any)."""
    if status.state is not EndpointState.ready:
        return status
    url = load_balancer_url(service)
    if url is not None:
        return replace(status, endpoint=Endpoint("http", url=url))
    if service is None:
        why = f"{WAITING_FOR_LOAD_BALANCER}: Service {status.name} does not exist (deploying again creates it)"
    elif (kind := (service.get("spec") or {}).get("type")) != "LoadBalancer":
        why = f"{WAITING_FOR_LOAD_BALANCER}: Service {status.name} is {kind}, not LoadBalancer (delete and redeploy)"
    else:
        why = WAITING_FOR_LOAD_BALANCER
        warning = _latest_warning(events)
        if warning:
            why = f"{why} ({warning})"
    return replace(status, state=EndpointState.deploying, message=why)


def _latest_warning(events: Sequence[dict[str, Any]]) -> str | None:
    """The newest Warning event, e.g. the load balancer controller's `FailedDeployModel: ...`."""
    warnings = [e for e in events if e.get("type") == "Warning"]
    if not warnings:
        return None

    def when(event: dict[str, Any]) -> str:
        meta = event.get("metadata") or {}
        return str(event.get("lastTimestamp") or event.get("eventTime") or meta.get("creationTimestamp") or "")

    newest = max(warnings, key=when)
    return f"{newest.get('reason') or 'Warning'}: {newest.get('message') or ''}".rstrip(": ")


def _pod_problem(pods: list[dict[str, Any]], *, fatal_only: bool = False) -> str | None:
    """The first reason a pod is not running: unschedulable (no GPU node yet), image pull, crash loop."""
    for pod in pods:
        status = pod.get("status") or {}
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason and reason != "ContainerCreating" and (not fatal_only or reason in _FATAL_WAITING):
                return f"{reason}: {waiting.get('message') or ''}".rstrip(": ")
        if fatal_only:
            continue
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                return f"{condition.get('reason') or 'Unschedulable'}: {condition.get('message') or ''}".rstrip(": ")
    return None
