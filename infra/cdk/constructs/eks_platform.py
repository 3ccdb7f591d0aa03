"""What Mini Studio installs in an EKS cluster: KubeRay, KEDA, a Prometheus for KEDA to query, the NVIDIA device
plugin (new clusters only), the serving namespace with its workload service account, and the RBAC the workers'
Kubernetes groups get there. Chart versions are pinned so a redeploy never upgrades an operator by surprise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from functions.core import names
from infra.cdk.config import SERVING_NAMESPACE, WORKLOAD_SERVICE_ACCOUNT

DISPATCH_GROUP = f"{names.APP}-dispatch"  # creates and deletes RayJobs, vLLM Deployments, ScaledObjects
OBSERVE_GROUP = f"{names.APP}-observe"  # status worker and reconciler: read only
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
        namespace = eks.KubernetesManifest(
            self,
            "ServingNamespace",
            cluster=cluster,
            manifest=[{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SERVING_NAMESPACE}}],
        )
        rbac = eks.KubernetesManifest(self, "WorkersRbac", cluster=cluster, manifest=rbac_manifests())
        rbac.node.add_dependency(namespace)


def rbac_manifests() -> list[dict[str, Any]]:
    """The workload service account, plus a Role per worker group bound in the serving namespace only."""
    meta = {"namespace": SERVING_NAMESPACE}
    manifests: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": WORKLOAD_SERVICE_ACCOUNT, **meta}}
    ]
    for group, verbs in ((DISPATCH_GROUP, _WRITE), (OBSERVE_GROUP, _READ)):
        rules = [
            # Only the dispatcher handles Secrets (the inference server key); observers never read them.
            {
                "apiGroups": [api],
                "resources": [r for r in resources if group == DISPATCH_GROUP or r != "secrets"],
                "verbs": verbs,
            }
            for api, resources in _RESOURCES
        ]
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": group, **meta}}
        manifests.append({**role, "rules": rules})
        manifests.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": group, **meta},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": group},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
            }
        )
    return manifests
