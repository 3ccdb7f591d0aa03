"""Cluster capacity for `cluster_status()`: what the nodes can give (allocatable) minus what pods hold (requests).

Kubernetes schedules on requests, not on use, so "available" here is what a new pod could still be granted: a
GPU node whose one GPU is requested by a running trainer has none available even if the trainer idles. Pods count
while they hold their node: assigned to it and neither Succeeded nor Failed. Nodes that are not Ready, or are
cordoned, give nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from functions.compute.k8s import GPU_RESOURCE

_DONE = ("Succeeded", "Failed")
_INSTANCE_TYPE = "node.kubernetes.io/instance-type"


def quantity(value: Any) -> Decimal:
    from kubernetes.utils.quantity import parse_quantity

    return Decimal(0) if value in (None, "") else Decimal(parse_quantity(str(value)))


def usable(node: dict[str, Any]) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_requests(pod: dict[str, Any]) -> dict[str, Decimal]:
    """What the scheduler reserves for a pod: the sum of its containers, or its largest init container if larger."""
    spec = pod.get("spec") or {}
    totals: dict[str, Decimal] = {}
    for container in spec.get("containers") or []:
        for key, value in _requests(container).items():
            totals[key] = totals.get(key, Decimal(0)) + value
    for container in spec.get("initContainers") or []:
        for key, value in _requests(container).items():
            totals[key] = max(totals.get(key, Decimal(0)), value)
    return totals


def _requests(container: dict[str, Any]) -> dict[str, Decimal]:
    resources = container.get("resources") or {}
    # Extended resources such as nvidia.com/gpu may be given as limits only: the request then equals the limit.
    merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    return {key: quantity(value) for key, value in merged.items()}


def summarize(nodes: list[dict[str, Any]] | None, pods: list[dict[str, Any]]) -> dict[str, Any]:
    """`nodes` None: the caller may not list nodes; then only what the given pods request is known."""
    held: dict[str, dict[str, Decimal]] = {}
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name or (pod.get("status") or {}).get("phase") in _DONE:
            continue
        node_held = held.setdefault(node_name, {})
        for key, value in pod_requests(pod).items():
            node_held[key] = node_held.get(key, Decimal(0)) + value
    used = {
        key: sum((h.get(key, Decimal(0)) for h in held.values()), Decimal(0)) for key in ("cpu", "memory", GPU_RESOURCE)
    }
    if nodes is None:
        return {
            "cpu": {"total": None, "available": None, "requested": float(used["cpu"])},
            "memory": {"total_bytes": None, "available_bytes": None, "requested_bytes": int(used["memory"])},
            "gpu": {"total": None, "available": None, "requested": int(used[GPU_RESOURCE]), "nodes": []},
        }
    totals = {"cpu": Decimal(0), "memory": Decimal(0), GPU_RESOURCE: Decimal(0)}
    free = dict(totals)
    gpu_nodes = []
    for node in nodes:
        if not usable(node):
            continue
        name = (node.get("metadata") or {}).get("name", "")
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        node_held = held.get(name, {})
        for key in totals:
            have = quantity(allocatable.get(key))
            totals[key] += have
            free[key] += max(Decimal(0), have - node_held.get(key, Decimal(0)))
        gpus = quantity(allocatable.get(GPU_RESOURCE))
        if gpus:
            gpu_nodes.append(
                {
                    "name": name,
                    "instance_type": ((node.get("metadata") or {}).get("labels") or {}).get(_INSTANCE_TYPE),
                    "total": int(gpus),
                    "used": int(node_held.get(GPU_RESOURCE, Decimal(0))),
                }
            )
    return {
        "cpu": {"total": float(totals["cpu"]), "available": float(free["cpu"]), "requested": float(used["cpu"])},
        "memory": {
            "total_bytes": int(totals["memory"]),
            "available_bytes": int(free["memory"]),
            "requested_bytes": int(used["memory"]),
        },
        "gpu": {
            "total": int(totals[GPU_RESOURCE]),
            "available": int(free[GPU_RESOURCE]),
            "requested": int(used[GPU_RESOURCE]),
            "nodes": gpu_nodes,
        },
    }
