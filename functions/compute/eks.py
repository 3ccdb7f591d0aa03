"""The `eks` backend: training as KubeRay RayJobs, serving as vLLM Deployments scaled by KEDA (k8s/endpoints.py).

The workers reach the cluster with their own IAM role: `eks:DescribeCluster` gives the API endpoint and CA, an EKS
token (k8s/token.py) authenticates, and the cluster's access entries map the role to a namespace-scoped group.
The Kubernetes client is built on first use, not at import, so a Lambda's init (and its SnapStart snapshot) holds
no token that would expire. Building that client imports the `kubernetes` package (the `eks` extra); nothing
else in the control plane does, unless COMPUTE_BACKEND=eks.

A RayJob's name is the run name, so submitting twice finds the first (the API server answers 409 to the second
create). Cancelling suspends the RayJob: KubeRay deletes its Ray cluster (the trainer gets SIGTERM and the pod's
grace period to checkpoint) and the RayJob stays, marked by us, so its state still reads `cancelled`.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from functions.compute.base import RunState, RunStatus, TrainingSpec
from functions.compute.k8s import (
    ANNOTATION_CANCELLED,
    CLUSTER_READER_ROLE,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    capacity,
    rayjob,
)
from functions.compute.k8s.client import (
    NODES,
    PODS,
    ClientHolder,
    Conflict,
    Forbidden,
    Kind,
    KubeClient,
    KubeError,
    NotFound,
    Resource,
)
from functions.compute.k8s.endpoints import EksServingBackend
from functions.core.settings import Settings, get_settings

SUBMITTER_JOB_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on the submitter's pods
RAYJOBS = Kind.custom(rayjob.API_VERSION, rayjob.PLURAL)


class EksBackend(ClientHolder):
    name = "eks"

    def __init__(self, settings: Settings | None = None, *, client: KubeClient | None = None) -> None:
        super().__init__(settings or get_settings(), client)

    @property
    def _rayjobs(self) -> Resource:
        return self.client.resource(RAYJOBS, self.settings.eks_namespace)

    # --- the protocol ---------------------------------------------------------------------------------------
    def submit(self, run_name: str, spec: TrainingSpec) -> RunStatus:
        body = rayjob.render(run_name, spec, self.settings)
        try:
            created = self._rayjobs.create(body)
        except Conflict:  # a redelivered dispatch: the first submit's RayJob is the run
            return self.status(run_name)
        return rayjob.to_status(run_name, created)

    def status(self, run_name: str) -> RunStatus:
        try:
            return rayjob.to_status(run_name, self._rayjobs.get(run_name))
        except NotFound:
            return RunStatus(run_name, RunState.missing)

    def cancel(self, run_name: str) -> RunStatus:
        current = self.status(run_name)
        if current.settled:
            return current
        stamp = datetime.now(UTC).isoformat()
        patch = {"metadata": {"annotations": {ANNOTATION_CANCELLED: stamp}}, "spec": {"suspend": True}}
        try:
            return rayjob.to_status(run_name, self._rayjobs.patch(run_name, patch))
        except NotFound:
            return RunStatus(run_name, RunState.missing)
        except KubeError as exc:
            if exc.status != 422:  # 422: this KubeRay refuses to suspend it now; deleting stops it all the same
                raise
        with contextlib.suppress(NotFound):
            self._rayjobs.delete(run_name)
        return RunStatus(run_name, RunState.cancelled, "the RayJob could not be suspended and was deleted")

    def logs(self, run_name: str, tail: int = 200) -> str:
        """The submitter pod's output: `ray job submit` follows the driver's logs, so the trainer's lines are there."""
        if tail <= 0:
            return ""
        ns = self.settings.eks_namespace
        pods = self.client.resource(PODS, ns).list(label_selector=f"{SUBMITTER_JOB_LABEL}={run_name}")
        if not pods:
            return ""
        newest = max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
        pod_name = newest["metadata"]["name"]
        try:
            return self.client.pod_log(ns, pod_name, tail)
        except KubeError as exc:
            if exc.status in (400, 404):  # its container has not started yet, or the pod is gone
                return ""
            raise

    def cluster_status(self) -> dict[str, Any]:
        """GPU, CPU and memory from the nodes' allocatable minus running pods' requests, plus this backend's runs.

        Nodes and every namespace's pods are read with the ClusterRole `CLUSTER_READER_ROLE` (get/list nodes and
        pods) that the platform binds to the control plane's Kubernetes group. Where that binding is missing (an
        imported cluster set up by hand, an older install) the API server answers 403: the answer then says which
        right is missing and reports what this namespace's pods request."""
        notes: list[str] = []
        ns = self.settings.eks_namespace
        nodes: list[dict[str, Any]] | None
        try:
            nodes = self.client.resource(NODES).list()
        except Forbidden:
            nodes = None
            notes.append(
                f"listing nodes is forbidden: bind the ClusterRole {CLUSTER_READER_ROLE} (get/list on nodes and pods) "
                "for capacity totals"
            )
        live = "status.phase!=Succeeded,status.phase!=Failed"
        try:
            pods = self.client.resource(PODS).list(field_selector=live)
        except Forbidden:
            pods = self.client.resource(PODS, ns).list(field_selector=live)
            if nodes is not None:
                notes.append(
                    f"only pods in namespace {ns} are counted (listing pods cluster-wide is forbidden: see "
                    f"{CLUSTER_READER_ROLE}): other namespaces' requests are not subtracted"
                )
        running, queued = [], []
        for item in self._rayjobs.list(label_selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}"):
            name = (item.get("metadata") or {}).get("name", "")
            state = rayjob.to_status(name, item).state
            if state is RunState.running:
                running.append(name)
            elif state is RunState.pending:
                queued.append(name)
        return {
            "backend": self.name,
            "cluster": self.settings.eks_cluster_name,
            "namespace": ns,
            **capacity.summarize(nodes, pods),
            "runs": {"running": sorted(running), "queued": sorted(queued)},
            "notes": notes,
        }


def create_backend(settings: Settings) -> EksBackend:
    return EksBackend(settings)


def create_serving_backend(settings: Settings) -> EksServingBackend:
    return EksServingBackend(settings)
