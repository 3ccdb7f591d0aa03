"""The eks backend's Kubernetes side: manifests (RayJob, Deployment, Service, Secret, KEDA ScaledObject), the API
client built from `eks:DescribeCluster` plus an EKS token, and the readers that turn objects into run states.

Everything here may import the `kubernetes` client (the `eks` extra); only `functions.compute.eks` imports this
package, so the API and the other backends never pay for it at import time.
"""

from __future__ import annotations

MANAGED_BY = "ministudio"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_JOB_ID = "ministudio.io/job-id"
LABEL_TENANT = "ministudio.io/tenant"
# Set when the backend cancels a RayJob: a RayJob suspended by someone else (Kueue admission) is only waiting.
ANNOTATION_CANCELLED = "ministudio.io/cancelled-at"
GPU_RESOURCE = "nvidia.com/gpu"
# The GPU node group's taint (infra/cdk/constructs/eks_platform.py GPU_TAINT): only pods that tolerate it land there.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
# The ClusterRole (get/list nodes and pods, cluster-wide) that infra/cdk/constructs/eks_platform.py binds to the
# control plane's Kubernetes group, so `cluster_status` sees every node and every pod's requests.
CLUSTER_READER_ROLE = f"{MANAGED_BY}-cluster-reader"
