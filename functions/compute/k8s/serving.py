"""Serving manifests: the server key Secret, a Deployment + Service of `ministudio-serve --engine vllm`, and the
KEDA ScaledObject that scales it on queue depth. How those objects read back as an `EndpointStatus` is in
serving_status.py; the calls that create and change them are in endpoints.py.

The control plane (the API function, in the VPC's private subnets, outside the cluster) cannot resolve a ClusterIP
`*.svc.cluster.local` name, so the Service is `type: LoadBalancer` and the AWS Load Balancer Controller
(infra/cdk/stacks/compute_eks.py) gives it an internal NLB that targets the pods' IPs directly. The endpoint is
`http://{status.loadBalancer.ingress[0].hostname}:8000` (`load_balancer_url`).

All of a deployment's objects share its backend name (`serving_name(...)`, DNS-1123), so deploying twice finds
them. Pods carry two labels with the name: `ministudio.io/deployment` (selectors, people) and a plain `deployment`,
because the Prometheus chart's `kubernetes-pods` job copies pod labels onto series with `labelmap`, and
`queue_depth_query(name)` selects `deployment="<name>"`. The ScaledObject's trigger has no `metricName` (KEDA
derives it; setting one is deprecated and refused by newer versions).
"""

from __future__ import annotations

import json
from typing import Any

from functions.compute.k8s import GPU_RESOURCE, GPU_TOLERATION, LABEL_MANAGED_BY, LABEL_TENANT, MANAGED_BY
from functions.compute.serving import DEPLOYMENT_LABEL, POD_DEPLOYMENT_LABEL, ServingSpec, queue_depth_query
from functions.core import names
from functions.core.settings import Settings

# The port the API function may reach on cluster nodes (infra/cdk/stacks/compute_eks.py VLLM_PORT).
PORT = 8000
CONTAINER = "server"
SECRET_NAME = f"{names.APP}-inference-key"  # one server key for every deployment: the control plane holds it
SECRET_KEY = "api-key"  # noqa: S105 - the entry's name inside the Secret, not a secret
SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject", "scaledobjects")
# Annotations on the Deployment that let `status` answer from one GET: the asked replica range, attached adapters.
ANNOTATION_MIN = "ministudio.io/min-replicas"
ANNOTATION_MAX = "ministudio.io/max-replicas"
ANNOTATION_ADAPTERS = "ministudio.io/adapters"
# The AWS Load Balancer Controller's Service annotations (kubernetes-sigs.github.io/aws-load-balancer-controller,
# guide/service/annotations): an NLB it owns (`external`, so the in-tree cloud provider leaves the Service alone),
# registering pod IPs (no NodePort hop), reachable only inside the VPC, health-checked on the server's /ready.
LOAD_BALANCER_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-type": "external",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol": "http",
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path": "/ready",
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-port": "traffic-port",
}
ACTIVATION_THRESHOLD = 0  # from zero replicas, any waiting request wakes the deployment


def adapter_source(settings: Settings) -> str:
    """Where the server finds `ft:` adapters on demand: the trainer's output layout under the artifacts bucket."""
    return f"s3://{settings.artifacts_bucket}/{names.ARTIFACTS_PREFIX}{{tenant}}/{{job_id}}/adapter/"


def load_balancer_url(service: dict[str, Any] | None) -> str | None:
    """`http://HOST:PORT` from the Service's first load balancer ingress hostname; None until the controller has
    provisioned the NLB (or when there is no Service)."""
    if not service:
        return None
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    host = (ingress[0] or {}).get("hostname") if ingress else None
    if not host:
        return None
    ports = (service.get("spec") or {}).get("ports") or []
    port = next((p.get("port") for p in ports if p.get("name") == "http"), None) or PORT
    return f"http://{host}:{port}"


def labels(spec: ServingSpec) -> dict[str, str]:
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        POD_DEPLOYMENT_LABEL: spec.name,
        LABEL_TENANT: spec.tenant,
        "app.kubernetes.io/name": "ministudio-serve",
    }


def render_secret(settings: Settings) -> dict[str, Any]:
    key = settings.inference_api_key
    if key is None:
        raise ValueError(
            "INFERENCE_API_KEY (or INFERENCE_API_KEY_SECRET_ARN) is not set: an EKS inference server would answer "
            "anyone in the cluster without it"
        )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET_NAME,
            "namespace": settings.eks_namespace,
            "labels": {LABEL_MANAGED_BY: MANAGED_BY},
        },
        "type": "Opaque",
        "stringData": {SECRET_KEY: key.get_secret_value()},
    }


def render_deployment(spec: ServingSpec, settings: Settings) -> dict[str, Any]:
    s = settings
    if not s.inference_image_uri:
        raise ValueError("INFERENCE_IMAGE_URI is not set: the eks backend needs the inference image to serve")
    args, resources = _server_args(spec, s)
    gpus = bool(resources["requests"].get(GPU_RESOURCE))
    pod_labels = {**labels(spec), DEPLOYMENT_LABEL: spec.name}
    container = {
        "name": CONTAINER,
        "image": s.inference_image_uri,
        "command": ["ministudio-serve"],
        "args": args,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [
            {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": SECRET_KEY}}},
            {"name": "AWS_REGION", "value": s.aws_region},
            {"name": "AWS_DEFAULT_REGION", "value": s.aws_region},
            {"name": "ARTIFACTS_BUCKET_NAME", "value": s.artifacts_bucket},  # a tabular server's model versions
        ],
        "resources": resources,
        # /ready answers 200 once the model is loaded; /health stays 200 while loading and fails only on a failed
        # load, so a slow download is never killed by liveness.
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "initialDelaySeconds": 30,
            "periodSeconds": 15,
            "failureThreshold": 4,
        },
        "startupProbe": {  # model download and engine start: up to the ready timeout before liveness applies
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": max(1, s.serving_ready_timeout_seconds // 10),
        },
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],  # noqa: S108 - in the pod, not here
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": s.eks_service_account,  # Pod Identity: read adapters and models from S3
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}}],
    }
    if gpus:
        pod_spec["tolerations"] = [GPU_TOLERATION]
    if spec.profile == "tabular":
        pod_spec["nodeSelector"] = dict(s.eks_cpu_node_selector)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": spec.name,
            "namespace": s.eks_namespace,
            "labels": labels(spec),
            "annotations": {
                ANNOTATION_MIN: str(spec.min_replicas),
                ANNOTATION_MAX: str(spec.max_replicas),
                ANNOTATION_ADAPTERS: json.dumps([a.model_id for a in spec.adapters]),
                "ministudio.io/deployment-id": spec.deployment_id,
            },
        },
        "spec": {
            # Start one replica even where the range allows zero: the first rollout proves the image and model work.
            "replicas": max(1, spec.min_replicas),
            "selector": {"matchLabels": {POD_DEPLOYMENT_LABEL: spec.name}},
            "progressDeadlineSeconds": s.serving_ready_timeout_seconds,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def _server_args(spec: ServingSpec, s: Settings) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The server's arguments and resources: `llm` on vLLM with its GPUs; `tabular` (seed 004) on CPU only."""
    if spec.profile == "tabular":
        args = ["--profile", "tabular", "--host", "0.0.0.0", "--port", str(PORT)]
        return args, {
            "requests": {"cpu": s.eks_tabular_cpu, "memory": s.eks_tabular_memory},
            "limits": {"memory": s.eks_tabular_memory},
        }
    engine = "vllm" if spec.engine == "auto" else spec.engine
    args = [
        "--engine",
        engine,
        "--model",
        spec.model,
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--max-loras",
        str(spec.max_loras),
        "--adapter-source",
        adapter_source(s),
    ]
    if spec.adapters:
        args += ["--lora-modules", *(f"{a.model_id}={a.artifact_uri}" for a in spec.adapters)]
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": s.eks_serving_cpu, "memory": s.eks_serving_memory},
        "limits": {"memory": s.eks_serving_memory},
    }
    if spec.gpu_count:
        resources["requests"][GPU_RESOURCE] = resources["limits"][GPU_RESOURCE] = str(spec.gpu_count)
    return args, resources


def render_service(spec: ServingSpec, settings: Settings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": spec.name,
            "namespace": settings.eks_namespace,
            "labels": labels(spec),
            "annotations": dict(LOAD_BALANCER_ANNOTATIONS),
        },
        "spec": {
            "type": "LoadBalancer",
            "allocateLoadBalancerNodePorts": False,  # the NLB reaches pod IPs: no node ports to hold
            "selector": {POD_DEPLOYMENT_LABEL: spec.name},
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_scaled_object(spec: ServingSpec, settings: Settings) -> dict[str, Any]:
    from functions.compute.k8s.wake_trigger import cooldown_seconds, held_requests_trigger

    api_version, kind, _ = SCALED_OBJECT
    wake = held_requests_trigger(spec, settings)  # a zero-minimum deployment also wakes on requests held for it
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": spec.name, "namespace": settings.eks_namespace, "labels": labels(spec)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            **replica_range(spec.min_replicas, spec.max_replicas),
            "pollingInterval": 15,
            "cooldownPeriod": cooldown_seconds(spec, settings),
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": settings.keda_prometheus_url,
                        "query": queue_depth_query(spec.name),
                        "threshold": _number(spec.prometheus_threshold),
                        "activationThreshold": _number(ACTIVATION_THRESHOLD),
                    },
                },
                *([wake] if wake else []),
            ],
        },
    }


def replica_range(min_replicas: int, max_replicas: int) -> dict[str, int]:
    """KEDA scales to zero only when minReplicaCount is 0, so a deployment asked for ≥ 1 replica never sleeps."""
    if min_replicas < 0 or max_replicas < max(1, min_replicas):
        raise ValueError(f"replica range {min_replicas}..{max_replicas} is not 0 ≤ min ≤ max, max ≥ 1")
    return {"minReplicaCount": min_replicas, "maxReplicaCount": max_replicas}


def _number(value: float) -> str:
    return f"{value:g}"
