"""The `sagemaker` serving backend: one SageMaker endpoint per deployment, models as inference components.

Per deployment `name` (serving_name(...), DNS-1123, ≤ 63 characters):
- a Model `name` (the inference image, which answers SageMaker's `/ping` and `/invocations`),
- an EndpointConfig `{name}-cfg-{hash}` (instance type, managed instance scaling 1..max_replicas; a new one per
  change of bounds, since configs are immutable) and the Endpoint `name`,
- the base model as inference component `{name}-base` (accelerators per copy, copy count scaled by Application
  Auto Scaling on concurrent requests per copy),
- each fine-tuned adapter as inference component `{name}-lora-{hash of model id}` whose BaseInferenceComponentName
  names the base's.
An inference component can only be created on an InService endpoint, and deleting an endpoint waits for its
components to go, so both happen in steps: `deploy` and `delete` start them, and every `status` call moves the
deployment on (the status worker and the reconciler poll it). The endpoint's tags hold what those later steps
need (spec values, scaling applied, deletion asked); each adapter component's tags hold its model id.

The container gets no server key: SageMaker's runtime cannot forward an Authorization header to `/invocations`,
and a Model's environment is readable by anyone allowed DescribeModel. IAM on InvokeEndpoint is the key here.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from functions.compute.sagemaker import (
    Clients,
    SageMakerBackendError,
    already_exists,
    derived_name,
    error_code,
    error_message,
    is_missing,
    require,
)
from functions.compute.serving import AdapterSpec, Endpoint, EndpointState, EndpointStatus, ServingSpec
from functions.core import names
from functions.core.settings import Settings, get_settings

VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
SCALING_METRIC = "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution"
BASE_MEMORY_MB = 1024  # host memory a copy reserves beside its accelerators: the server process, not the weights
_MAX_STARTUP_SECONDS = 3600  # SageMaker's ceiling for both startup timeouts
_ENV_VALUE_CHARS = 1024
_T = "ministudio:"  # tag key prefix
_ENDPOINT_STATES = {
    "Creating": EndpointState.deploying,
    "Updating": EndpointState.deploying,
    "SystemUpdating": EndpointState.deploying,
    "RollingBack": EndpointState.deploying,
    "OutOfService": EndpointState.deploying,  # may recover; the serving ready timeout fails it if it does not
    "InService": EndpointState.deploying,  # the endpoint is up; ready once the base component is
    "Deleting": EndpointState.deleting,
    "Failed": EndpointState.failed,
    "UpdateRollbackFailed": EndpointState.failed,
}
_COMPONENT_STATES = {
    "InService": EndpointState.ready,
    "Creating": EndpointState.deploying,
    "Updating": EndpointState.ready,  # copies keep serving while the count changes
    "Failed": EndpointState.failed,
    "Deleting": EndpointState.deleting,
}
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


class SageMakerServingBackend:
    name = "sagemaker"

    def __init__(self, settings: Settings | None = None, *, clients: dict[str, Any] | None = None) -> None:
        self.settings = settings or get_settings()
        self.client = Clients(self.settings, clients)

    # --- the protocol ---------------------------------------------------------------------------------------
    def deploy(self, spec: ServingSpec) -> EndpointStatus:
        _check_range(spec.min_replicas, spec.max_replicas)
        if self._endpoint(spec.name) is not None:
            return self.status(spec.name)
        s, sm, name = self.settings, self.client("sagemaker"), spec.name
        role = require(s.sagemaker_execution_role_arn, "SAGEMAKER_EXECUTION_ROLE_ARN")
        tags = [{"Key": k, "Value": v} for k, v in _spec_tags(spec).items()]
        self._create(
            "CreateModel",
            sm.create_model,
            ModelName=name,
            ExecutionRoleArn=role,
            PrimaryContainer={
                "Image": require(s.inference_image_uri, "INFERENCE_IMAGE_URI"),
                "Environment": self.container_env(spec),
            },
            Tags=tags,
        )
        self._create_config(name, spec.max_replicas, tags)
        self._create(
            "CreateEndpoint",
            sm.create_endpoint,
            EndpointName=name,
            EndpointConfigName=config_name(name, spec.max_replicas),
            Tags=tags,
        )
        return self.status(name)

    def status(self, name: str) -> EndpointStatus:
        endpoint = self._endpoint(name)
        if endpoint is None:
            return EndpointStatus(name, EndpointState.missing)
        tags = self._tags(endpoint["EndpointArn"])
        components = self._components(name)
        base = components.pop(base_component(name), None)
        if endpoint["EndpointStatus"] == "InService":
            if _T + "deleting" in tags:
                return self._finish_delete(name, endpoint, base, components)
            base = self._converge(name, endpoint, tags, base)
        return self._status(name, endpoint, base, components)

    def scale(self, name: str, min_replicas: int, max_replicas: int) -> EndpointStatus:
        _check_range(min_replicas, max_replicas)
        endpoint = self._endpoint(name)
        if endpoint is None:
            return EndpointStatus(name, EndpointState.missing)
        values = {_T + "min-replicas": str(min_replicas), _T + "max-replicas": str(max_replicas)}
        self.client("sagemaker").add_tags(
            ResourceArn=endpoint["EndpointArn"], Tags=[{"Key": k, "Value": v} for k, v in values.items()]
        )
        return self.status(name)  # applies the range now if the endpoint is InService, else once it is

    def delete(self, name: str) -> EndpointStatus:
        endpoint = self._endpoint(name)
        if endpoint is None:  # leftovers of a deploy that failed half-way
            self._delete_config_and_model(name)
            return EndpointStatus(name, EndpointState.missing)
        if endpoint["EndpointStatus"] == "Deleting":
            return self._status(name, endpoint, None, {})
        sm = self.client("sagemaker")
        sm.add_tags(ResourceArn=endpoint["EndpointArn"], Tags=[{"Key": _T + "deleting", "Value": "1"}])
        components = self._components(name)
        base = components.pop(base_component(name), None)
        return self._finish_delete(name, endpoint, base, components)

    def add_adapter(self, name: str, adapter: AdapterSpec) -> EndpointStatus:
        current = self.status(name)
        if current.state is EndpointState.missing:
            raise LookupError(f"no SageMaker deployment {name}")
        if adapter.model_id in current.adapters:
            return current
        if current.state is not EndpointState.ready:
            raise SageMakerBackendError(f"deployment {name} is {current.state.value}: add adapters once it is ready")
        component = adapter_component(name, adapter.model_id)
        self._create(
            "CreateInferenceComponent",
            self.client("sagemaker").create_inference_component,
            InferenceComponentName=component,
            EndpointName=name,
            Specification={
                "BaseInferenceComponentName": base_component(name),
                "Container": {"ArtifactUrl": adapter_archive(adapter)},
            },
            Tags=[
                {"Key": _T + "model-id", "Value": adapter.model_id},
                {"Key": _T + "tenant", "Value": adapter.tenant},
            ],
        )
        return self.status(name)

    def adapter_endpoint(self, name: str, model_id: str) -> Endpoint | None:
        return adapter_endpoint(name, model_id)

    def remove_adapter(self, name: str, model_id: str) -> EndpointStatus:
        self._delete("DeleteInferenceComponent", InferenceComponentName=adapter_component(name, model_id))
        return self.status(name)

    # --- requests -----------------------------------------------------------------------------------------------
    def container_env(self, spec: ServingSpec) -> dict[str, str]:
        env = {
            "MODEL_REF": spec.model,
            "MAX_LORAS": str(spec.max_loras),
            "ADAPTER_SOURCE": adapter_source(self.settings),
            "AWS_REGION": self.settings.aws_region,
        }
        if spec.engine != "auto":
            env["ENGINE"] = spec.engine
        if spec.adapters:  # a dedicated fine-tuned deployment: the server loads them at start
            env["LORA_MODULES"] = json.dumps([f"{a.model_id}={a.artifact_uri}" for a in spec.adapters])
        for key, value in env.items():
            if len(value) > _ENV_VALUE_CHARS:
                raise ValueError(f"{key} is {len(value)} characters; SageMaker takes at most {_ENV_VALUE_CHARS}")
        return env

    def base_component_request(self, name: str, tags: dict[str, str]) -> dict[str, Any]:
        gpus = int(tags.get(_T + "gpu-count", "1"))
        timeout = min(self.settings.serving_ready_timeout_seconds, _MAX_STARTUP_SECONDS)
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
            "RuntimeConfig": {"CopyCount": int(tags.get(_T + "min-replicas", "1"))},
        }

    # --- steps ----------------------------------------------------------------------------------------------
    def _converge(
        self, name: str, endpoint: dict[str, Any], tags: dict[str, str], base: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """One step towards what the tags ask, on an InService endpoint: the base component, then its scaling,
        then instance bounds that hold max_replicas copies."""
        sm = self.client("sagemaker")
        if base is None:
            self._create(
                "CreateInferenceComponent", sm.create_inference_component, **self.base_component_request(name, tags)
            )
            return self._component(base_component(name))
        low, high = int(tags.get(_T + "min-replicas", "1")), int(tags.get(_T + "max-replicas", "1"))
        wanted = f"{low}-{high}"
        if base.get("InferenceComponentStatus") == "InService" and tags.get(_T + "scaling") != wanted:
            self._autoscale(name, low, high, float(tags.get(_T + "target-concurrency", "5")))
            sm.add_tags(ResourceArn=endpoint["EndpointArn"], Tags=[{"Key": _T + "scaling", "Value": wanted}])
        variants: list[dict[str, Any]] = endpoint.get("ProductionVariants") or [{}]
        bounds = variants[0].get("ManagedInstanceScaling") or {}
        if bounds.get("MaxInstanceCount") not in (None, high):
            self._create_config(name, high, [])
            sm.update_endpoint(EndpointName=name, EndpointConfigName=config_name(name, high))
        return base

    def _autoscale(self, name: str, low: int, high: int, target: float) -> None:
        scaling = self.client("application-autoscaling")
        resource = f"inference-component/{base_component(name)}"
        common = {"ServiceNamespace": "sagemaker", "ResourceId": resource, "ScalableDimension": SCALABLE_DIMENSION}
        scaling.register_scalable_target(**common, MinCapacity=low, MaxCapacity=high)
        scaling.put_scaling_policy(
            **common,
            PolicyName=derived_name(name, "copies"),
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "PredefinedMetricSpecification": {"PredefinedMetricType": SCALING_METRIC},
                "TargetValue": target,
                "ScaleOutCooldown": 60,
                "ScaleInCooldown": 300,
            },
        )

    def _create_config(self, name: str, max_instances: int, tags: list[dict[str, str]]) -> None:
        s = self.settings
        request: dict[str, Any] = {
            "EndpointConfigName": config_name(name, max_instances),
            "ExecutionRoleArn": require(s.sagemaker_execution_role_arn, "SAGEMAKER_EXECUTION_ROLE_ARN"),
            "ProductionVariants": [
                {
                    "VariantName": VARIANT,
                    "InstanceType": s.sagemaker_inference_instance_type,
                    "InitialInstanceCount": 1,
                    "ManagedInstanceScaling": {
                        "Status": "ENABLED",
                        "MinInstanceCount": 1,
                        "MaxInstanceCount": max_instances,  # one copy needs at most one instance
                    },
                    "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
                }
            ],
        }
        if tags:
            request["Tags"] = tags
        self._create("CreateEndpointConfig", self.client("sagemaker").create_endpoint_config, **request)

    def _finish_delete(
        self, name: str, endpoint: dict[str, Any], base: dict[str, Any] | None, adapters: dict[str, dict[str, Any]]
    ) -> EndpointStatus:
        """Adapters first (they live on the base's copies), then the base, then the endpoint once none is left."""
        if adapters:
            for component, summary in adapters.items():
                if summary.get("InferenceComponentStatus") != "Deleting":
                    self._delete("DeleteInferenceComponent", InferenceComponentName=component)
        elif base is not None:
            if base.get("InferenceComponentStatus") != "Deleting":
                self._deregister(name)
                self._delete("DeleteInferenceComponent", InferenceComponentName=base_component(name))
        else:
            self._delete("DeleteEndpoint", EndpointName=name)
            self._delete_config_and_model(name)
        return EndpointStatus(name, EndpointState.deleting, backend_id=endpoint.get("EndpointArn"))

    def _delete_config_and_model(self, name: str) -> None:
        sm = self.client("sagemaker")
        prefix = config_name(name, 0)[:-6]
        pages = sm.get_paginator("list_endpoint_configs").paginate(NameContains=prefix)
        for config in (c["EndpointConfigName"] for page in pages for c in page.get("EndpointConfigs", [])):
            if config.startswith(prefix):
                self._delete("DeleteEndpointConfig", EndpointConfigName=config)
        self._delete("DeleteModel", ModelName=name)

    def _deregister(self, name: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client("application-autoscaling").deregister_scalable_target(
                ServiceNamespace="sagemaker",
                ResourceId=f"inference-component/{base_component(name)}",
                ScalableDimension=SCALABLE_DIMENSION,
            )
        except ClientError as exc:
            if error_code(exc) != "ObjectNotFoundException":
                raise SageMakerBackendError(f"DeregisterScalableTarget {name}: {error_message(exc)}") from exc

    # --- reads ----------------------------------------------------------------------------------------------
    def _status(
        self, name: str, endpoint: dict[str, Any], base: dict[str, Any] | None, adapters: dict[str, dict[str, Any]]
    ) -> EndpointStatus:
        state = _ENDPOINT_STATES.get(endpoint["EndpointStatus"], EndpointState.deploying)
        message = endpoint.get("FailureReason") or None
        replicas = ready = 0
        if base is not None and endpoint["EndpointStatus"] in ("InService", "Updating", "SystemUpdating"):
            state = _COMPONENT_STATES.get(str(base.get("InferenceComponentStatus")), EndpointState.deploying)
            message = base.get("FailureReason") or message
            runtime = base.get("RuntimeConfig") or {}
            replicas, ready = int(runtime.get("DesiredCopyCount", 0)), int(runtime.get("CurrentCopyCount", 0))
            if state is EndpointState.ready and ready == 0:
                state = EndpointState.deploying
        attached = tuple(
            model_id
            for component, summary in sorted(adapters.items())
            if summary.get("InferenceComponentStatus") in ("InService", "Creating", "Updating")
            and (model_id := self._tags(summary["InferenceComponentArn"]).get(_T + "model-id"))
        )
        target = Endpoint(kind="sagemaker", target=name, component=base_component(name))
        return EndpointStatus(name, state, replicas, ready, target, attached, message, endpoint.get("EndpointArn"))

    def _endpoint(self, name: str) -> dict[str, Any] | None:
        return self._describe("DescribeEndpoint", EndpointName=name)

    def _component(self, component: str) -> dict[str, Any] | None:
        return self._describe("DescribeInferenceComponent", InferenceComponentName=component)

    def _components(self, name: str) -> dict[str, dict[str, Any]]:
        pages = self.client("sagemaker").get_paginator("list_inference_components").paginate(EndpointNameEquals=name)
        found = {c["InferenceComponentName"]: c for page in pages for c in page.get("InferenceComponents", [])}
        base = base_component(name)
        if base in found:  # the summary has no copy counts or failure reason
            found[base] = self._component(base) or found[base]
        return found

    def _tags(self, arn: str) -> dict[str, str]:
        pages = self.client("sagemaker").get_paginator("list_tags").paginate(ResourceArn=arn)
        return {t["Key"]: t["Value"] for page in pages for t in page.get("Tags", [])}

    # --- calls ----------------------------------------------------------------------------------------------
    def _describe(self, operation: str, **params: Any) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return dict(getattr(self.client("sagemaker"), _snake(operation))(**params))
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise SageMakerBackendError(f"{operation} {params}: {error_message(exc)}") from exc

    def _create(self, operation: str, call: Any, **params: Any) -> None:
        from botocore.exceptions import ClientError

        try:
            call(**params)
        except ClientError as exc:
            if not already_exists(exc):
                raise SageMakerBackendError(f"{operation}: {error_message(exc)}") from exc

    def _delete(self, operation: str, **params: Any) -> None:
        from botocore.exceptions import ClientError

        try:
            getattr(self.client("sagemaker"), _snake(operation))(**params)
        except ClientError as exc:
            if not is_missing(exc):
                raise SageMakerBackendError(f"{operation} {params}: {error_message(exc)}") from exc


def adapter_source(settings: Settings) -> str:
    """Where the server finds `ft:` adapters on demand: the trainer's output layout under the artifacts bucket."""
    return f"s3://{settings.artifacts_bucket}/{names.ARTIFACTS_PREFIX}{{tenant}}/{{job_id}}/adapter/"


def _spec_tags(spec: ServingSpec) -> dict[str, str]:
    return {
        _T + "deployment-id": spec.deployment_id,
        _T + "tenant": spec.tenant,
        _T + "model": spec.model,
        _T + "gpu-count": str(spec.gpu_count),
        _T + "min-replicas": str(spec.min_replicas),
        _T + "max-replicas": str(spec.max_replicas),
        _T + "target-concurrency": f"{spec.prometheus_threshold:g}",
    }


def _check_range(low: int, high: int) -> None:
    # Target tracking cannot scale a component out of zero copies: the sagemaker backend keeps at least one.
    if not 1 <= low <= high:
        raise ValueError(f"replicas must satisfy 1 <= min <= max on SageMaker, got {low}..{high}")


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()
