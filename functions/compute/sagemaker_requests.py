"""What the SageMaker serving backend asks SageMaker for: resource names derived from a deployment's name, the
container's environment, the endpoint config, the base inference component, and the tags that carry a deployment's
spec between the steps of `sagemaker_serving.py`. Pure functions of settings and spec: no AWS calls here."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from functions.compute.sagemaker_client import derived_name, require
from functions.compute.serving import AdapterSpec, Endpoint, ServingSpec
from functions.core import names
from functions.core.settings import Settings

VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
SCALING_METRIC = "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution"
BASE_MEMORY_MB = 1024  # host memory a copy reserves beside its accelerators: the server process, not the weights
MAX_STARTUP_SECONDS = 3600  # SageMaker's ceiling for both startup timeouts
ENV_VALUE_CHARS = 1024
TAG = "ministudio:"  # tag key prefix
_ADAPTER_PREFIX = re.compile(r"^s3://([^/]+)/" + re.escape(names.ARTIFACTS_PREFIX) + r"([^/]+)/([^/]+)/adapter/?$")


def base_component(name: str) -> str:
    return derived_name(name, "base")


def adapter_component(name: str, model_id: str) -> str:
    return derived_name(name, "lora-" + hashlib.sha256(model_id.encode()).hexdigest()[:10])


def config_name(name: str, max_instances: int) -> str:
    return derived_name(name, "cfg-" + hashlib.sha256(str(max_instances).encode()).hexdigest()[:6])


def adapter_endpoint(name: str, model_id: str) -> Endpoint:
    """Where the proxy sends a request for an adapter attached to deployment `name`."""
    return Endpoint(kind="sagemaker", target=name, component=adapter_component(name, model_id))


def adapter_archive(adapter: AdapterSpec) -> str:
    """Container.ArtifactUrl must be one .tar.gz. A SageMaker training job packs /opt/ml/model, where the trainer
    copies the adapter, as `{output}{job}/output/model.tar.gz`: the trainer's `.../adapter/` prefix maps to it."""
    uri = adapter.artifact_uri
    if uri.endswith(".tar.gz"):
        return uri
    match = _ADAPTER_PREFIX.match(uri)
    if match is None:
        raise ValueError(f"adapter {adapter.model_id}: {uri!r} is neither a .tar.gz nor a trainer adapter/ prefix")
    bucket, tenant, job_id = match.groups()
    if tenant != adapter.tenant:
        raise ValueError(f"adapter {adapter.model_id}: {uri!r} is not under tenant {adapter.tenant}'s prefix")
    return f"s3://{bucket}/{names.ARTIFACTS_PREFIX}{tenant}/{job_id}/{job_id}/output/model.tar.gz"


def adapter_source(settings: Settings) -> str:
    """Where the server finds `ft:` adapters on demand: the trainer's output layout under the artifacts bucket."""
    return f"s3://{settings.artifacts_bucket}/{names.ARTIFACTS_PREFIX}{{tenant}}/{{job_id}}/adapter/"


# SageMaker reaches the container only through InvokeEndpoint, which IAM authorizes (the control plane's role): that
# is the server key there (a bearer header cannot travel through InvokeEndpoint), and the server says so at start.
NO_KEY = {"ALLOW_NO_API_KEY": "1"}


def container_env(settings: Settings, spec: ServingSpec) -> dict[str, str]:
    if spec.profile == "tabular":  # seed 004's classical models: versions under the artifacts bucket, no LLM
        return {
            **NO_KEY,
            "SERVE_PROFILE": "tabular",
            "ARTIFACTS_BUCKET_NAME": settings.artifacts_bucket,
            "AWS_REGION": settings.aws_region,
        }
    env = {
        **NO_KEY,
        "MODEL_REF": spec.model,
        "MAX_LORAS": str(spec.max_loras),
        "ADAPTER_SOURCE": adapter_source(settings),
        "AWS_REGION": settings.aws_region,
    }
    if spec.engine != "auto":
        env["ENGINE"] = spec.engine
    if spec.adapters:  # a dedicated fine-tuned deployment: the server loads them at start
        env["LORA_MODULES"] = json.dumps([f"{a.model_id}={a.artifact_uri}" for a in spec.adapters])
    for key, value in env.items():
        if len(value) > ENV_VALUE_CHARS:
            raise ValueError(f"{key} is {len(value)} characters; SageMaker takes at most {ENV_VALUE_CHARS}")
    return env


def base_component_request(settings: Settings, name: str, tags: dict[str, str]) -> dict[str, Any]:
    gpus = int(tags.get(TAG + "gpu-count", "1"))
    timeout = min(settings.serving_ready_timeout_seconds, MAX_STARTUP_SECONDS)
    resources: dict[str, Any] = {"MinMemoryRequiredInMb": BASE_MEMORY_MB}
    if gpus > 0:
        resources["NumberOfAcceleratorDevicesRequired"] = gpus
    return {
        "InferenceComponentName": base_component(name),
        "EndpointName": name,
        "VariantName": VARIANT,
        "Specification": {
            "ModelName": name,
            "StartupParameters": {
                "ModelDataDownloadTimeoutInSeconds": timeout,
                "ContainerStartupHealthCheckTimeoutInSeconds": timeout,
            },
            "ComputeResourceRequirements": resources,
        },
        # At least one copy at first, even where the range allows zero: the first rollout proves the model serves.
        "RuntimeConfig": {"CopyCount": max(1, int(tags.get(TAG + "min-replicas", "1")))},
    }


def endpoint_config(
    settings: Settings, name: str, max_instances: int, tags: list[dict[str, str]], profile: str = "llm"
) -> dict[str, Any]:
    """`profile` tabular (seed 004's classical models) runs on a CPU instance type, the LLM profile on a GPU one."""
    instance_type = (
        settings.sagemaker_cpu_inference_instance_type
        if profile == "tabular"
        else settings.sagemaker_inference_instance_type
    )
    request: dict[str, Any] = {
        "EndpointConfigName": config_name(name, max_instances),
        "ExecutionRoleArn": require(settings.sagemaker_execution_role_arn, "SAGEMAKER_EXECUTION_ROLE_ARN"),
        "ProductionVariants": [
            {
                "VariantName": VARIANT,
                "InstanceType": instance_type,
                "InitialInstanceCount": 1,
                "ManagedInstanceScaling": {
                    "Status": "ENABLED",
                    # Zero where the deployment may sleep: its instances go when its copies have (sagemaker_zero.py).
                    "MinInstanceCount": 0 if {"Key": TAG + "min-replicas", "Value": "0"} in tags else 1,
                    "MaxInstanceCount": max_instances,  # one copy needs at most one instance
                },
                "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
            }
        ],
    }
    if tags:
        request["Tags"] = tags
    return request


def scaling(name: str, low: int, high: int, target: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Application Auto Scaling's scalable target and target-tracking policy for the base component's copies."""
    resource = f"inference-component/{base_component(name)}"
    common = {"ServiceNamespace": "sagemaker", "ResourceId": resource, "ScalableDimension": SCALABLE_DIMENSION}
    policy = {
        **common,
        "PolicyName": derived_name(name, "copies"),
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "PredefinedMetricSpecification": {"PredefinedMetricType": SCALING_METRIC},
            "TargetValue": target,
            "ScaleOutCooldown": 60,
            "ScaleInCooldown": 300,
        },
    }
    return {**common, "MinCapacity": low, "MaxCapacity": high}, policy


def spec_tags(spec: ServingSpec) -> dict[str, str]:
    return {
        TAG + "deployment-id": spec.deployment_id,
        TAG + "tenant": spec.tenant,
        TAG + "model": spec.model,
        TAG + "gpu-count": "0" if spec.profile == "tabular" else str(spec.gpu_count),
        TAG + "profile": spec.profile,
        TAG + "min-replicas": str(spec.min_replicas),
        TAG + "max-replicas": str(spec.max_replicas),
        TAG + "target-concurrency": f"{spec.prometheus_threshold:g}",
    }


def check_range(low: int, high: int) -> None:
    # min 0: target tracking scales in to zero copies, a step policy on an alarm scales out (sagemaker_zero.py).
    if not 0 <= low <= high or high < 1:
        raise ValueError(f"replicas must satisfy 0 <= min <= max, max >= 1 on SageMaker, got {low}..{high}")
