"""What Mini Studio installs in an EKS cluster: KubeRay, KEDA, a Prometheus for KEDA to query, the NVIDIA device
plugin (new clusters only), the serving namespace with its workload service account, and the RBAC the control
plane's Kubernetes groups get: a Role per group in the serving namespace, and one ClusterRole that reads nodes and
pods cluster-wide for `cluster_status`. Chart versions are pinned so a redeploy never upgrades an operator by surprise.

The AWS Load Balancer Controller (internal NLBs for the vLLM Services) comes with a new cluster
(infra/cdk/stacks/compute_eks.py); the serving namespace asks it for pod readiness gates, so a replica counts as
ready only once the NLB sees it healthy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from functions.compute.k8s import CLUSTER_READER_ROLE
from functions.core import names
from infra.cdk.config import SERVING_NAMESPACE, WORKLOAD_SERVICE_ACCOUNT

DISPATCH_GROUP = f"{names.APP}-dispatch"  # creates and deletes RayJobs, vLLM Deployments, ScaledObjects
OBSERVE_GROUP = f"{names.APP}-observe"  # status worker and reconciler: read only
# The API function: reads deployment state, scales deployments (PATCH), answers cluster status.
API_GROUP = f"{names.APP}-api"
# Who reads nodes and every namespace's pods (ClusterRole CLUSTER_READER_ROLE): the API, whose cluster-status
# route is the only caller of `cluster_status`.
CLUSTER_READER_GROUPS = (API_GROUP,)
# The AWS Load Balancer Controller injects a readiness gate into pods of namespaces with this label.
READINESS_GATE_LABEL = "elbv2.k8s.aws/pod-readiness-gate-inject"
GPU_LABEL = "nvidia.com/gpu.present"  # the device plugin chart's default affinity selects nodes with it
GPU_TAINT = "nvidia.com/gpu"

PROMETHEUS_NAMESPACE = "monitoring"
# The prometheus chart names its server Service "<release>-server" on port 80; KEDA's ScaledObjects point here.
PROMETHEUS_URL = f"http://prometheus-server.{PROMETHEUS_NAMESPACE}.svc.cluster.local:80"


@dataclass(frozen=True)
class Chart:
    chart: str
    repository: str
    version: str
    namespace: str
    values: Mapping[str, Any] = field(default_factory=dict)


CHARTS = {
    # The KubeRay v1.7 line: the RayJob CRD schema the eks backend's manifests are validated against.
    "KubeRay": Chart("kuberay-operator", "https://ray-project.github.io/kuberay-helm/", "1.7.0", "kuberay-system"),
    "Keda": Chart("keda", "https://kedacore.github.io/charts", "2.19.0", "keda"),
    "Prometheus": Chart(
        "prometheus",
        "https://prometheus-community.github.io/helm-charts",
        "29.2.0",
        PROMETHEUS_NAMESPACE,
        # Only the server: KEDA reads vllm:num_requests_waiting from pods annotated prometheus.io/scrape. No
        # persistent volume, since a new cluster has no EBS CSI driver and a few hours of history are enough.
        {
            "alertmanager": {"enabled": False},
            "prometheus-pushgateway": {"enabled": False},
            "prometheus-node-exporter": {"enabled": False},
            "kube-state-metrics": {"enabled": False},
            "server": {"persistentVolume": {"enabled": False}, "retention": "6h"},
        },
    ),
}
DEVICE_PLUGIN = Chart(
    "nvidia-device-plugin",
    "https://nvidia.github.io/k8s-device-plugin",
    "0.20.1",
    "kube-system",
    {"tolerations": [{"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"}]},
)

_WRITE = ["get", "list", "watch", "create", "update", "patch", "delete"]
_READ = ["get", "list", "watch"]
_API_PATCHES = {("apps", "deployments"), ("keda.sh", "scaledobjects")}  # `scale`: the range and the replicas
_RESOURCES = [
    ("", ["services", "pods", "pods/log", "events", "configmaps", "secrets", "serviceaccounts"]),
    ("apps", ["deployments", "deployments/scale", "replicasets"]),
    ("ray.io", ["rayjobs", "rayclusters"]),
    ("keda.sh", ["scaledobjects", "triggerauthentications"]),
]


class EksPlatform(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, cluster: eks.ICluster, new_cluster: bool) -> None:
        super().__init__(scope, construct_id)
        charts = dict(CHARTS)
        if new_cluster:  # an existing cluster's owner already runs a device plugin (or the GPU operator)
            charts["NvidiaDevicePlugin"] = DEVICE_PLUGIN
        for chart_id, chart in charts.items():
            eks.HelmChart(
                self,
                chart_id,
                cluster=cluster,
                chart=chart.chart,
                repository=chart.repository,
                version=chart.version,
                namespace=chart.namespace,
                release=chart.chart,
                create_namespace=True,
                values=dict(chart.values),
                wait=True,
                timeout=Duration.minutes(10),
            )
        namespace = eks.KubernetesManifest(self, "ServingNamespace", cluster=cluster, manifest=[namespace_manifest()])
        rbac = eks.KubernetesManifest(self, "WorkersRbac", cluster=cluster, manifest=rbac_manifests())
        rbac.node.add_dependency(namespace)


def namespace_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": SERVING_NAMESPACE, "labels": {READINESS_GATE_LABEL: "enabled"}},
    }


def rbac_manifests() -> list[dict[str, Any]]:
    """The workload service account, a Role per control-plane group bound in the serving namespace only, and the
    cluster-wide read of nodes and pods that `cluster_status` needs."""
    meta = {"namespace": SERVING_NAMESPACE}
    manifests: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": WORKLOAD_SERVICE_ACCOUNT, **meta}}
    ]
    for group in (DISPATCH_GROUP, OBSERVE_GROUP, API_GROUP):
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": group, **meta}}
        manifests.append({**role, "rules": _namespace_rules(group)})
        manifests.append(_binding("RoleBinding", "Role", group, [group], meta))
    manifests.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": CLUSTER_READER_ROLE},
            # Allocatable GPUs, CPU and memory per node; every namespace's pod requests to subtract from them.
            "rules": [{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list"]}],
        }
    )
    manifests.append(_binding("ClusterRoleBinding", "ClusterRole", CLUSTER_READER_ROLE, CLUSTER_READER_GROUPS))
    return manifests


def _namespace_rules(group: str) -> list[dict[str, Any]]:
    """The dispatcher writes everything it deploys; observers and the API read, never Secrets (the inference server
    key) nor pod logs (the API's); the API may also patch Deployments and ScaledObjects to scale them."""
    rules = []
    for api, resources in _RESOURCES:
        if group == DISPATCH_GROUP:
            rules.append({"apiGroups": [api], "resources": resources, "verbs": _WRITE})
            continue
        hidden = {"secrets"} | ({"pods/log"} if group == API_GROUP else set())
        rules.append({"apiGroups": [api], "resources": [r for r in resources if r not in hidden], "verbs": _READ})
        if group == API_GROUP:
            patched = [r for r in resources if (api, r) in _API_PATCHES]
            if patched:
                rules.append({"apiGroups": [api], "resources": patched, "verbs": ["patch"]})
    return rules


def _binding(
    kind: str, role_kind: str, role: str, groups: Sequence[str], meta: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": role, **(meta or {})},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g} for g in groups],
    }
