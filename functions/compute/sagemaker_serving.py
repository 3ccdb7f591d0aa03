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

from typing import Any

from functions.compute import sagemaker_requests as requests
from functions.compute import sagemaker_zero as zero
from functions.compute.sagemaker_client import (
    Clients,
    SageMakerBackendError,
    create,
    delete,
    describe,
    require,
)
from functions.compute.sagemaker_requests import (
    TAG,
    adapter_archive,
    adapter_component,
    adapter_endpoint,
    base_component,
    config_name,
    spec_tags,
)
from functions.compute.serving import AdapterSpec, Endpoint, EndpointState, EndpointStatus, ServingSpec
from functions.core.settings import Settings, get_settings

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


class SageMakerServingBackend:
    name = "sagemaker"

    def __init__(self, settings: Settings | None = None, *, clients: dict[str, Any] | None = None) -> None:
        self.settings = settings or get_settings()
        self.client = Clients(self.settings, clients)

    # --- the protocol ---------------------------------------------------------------------------------------
    def deploy(self, spec: ServingSpec) -> EndpointStatus:
        requests.check_range(spec.min_replicas, spec.max_replicas)
        if self._endpoint(spec.name) is not None:
            return self.status(spec.name)
        s, sm, name = self.settings, self.client("sagemaker"), spec.name
        role = require(s.sagemaker_execution_role_arn, "SAGEMAKER_EXECUTION_ROLE_ARN")
        tags = [{"Key": k, "Value": v} for k, v in spec_tags(spec).items()]
        self._create(
            "CreateModel",
            sm.create_model,
            ModelName=name,
            ExecutionRoleArn=role,
            PrimaryContainer={
                "Image": require(s.inference_image_uri, "INFERENCE_IMAGE_URI"),
                "Environment": requests.container_env(self.settings, spec),
            },
            Tags=tags,
        )
        self._create_config(name, spec.max_replicas, tags, spec.profile)
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
            if TAG + "deleting" in tags:
                return self._finish_delete(name, endpoint, base, components, tags)
            base = self._converge(name, endpoint, tags, base)
        return self._status(name, endpoint, base, components)

    def scale(self, name: str, min_replicas: int, max_replicas: int) -> EndpointStatus:
        requests.check_range(min_replicas, max_replicas)
        endpoint = self._endpoint(name)
        if endpoint is None:
            return EndpointStatus(name, EndpointState.missing)
        values = {TAG + "min-replicas": str(min_replicas), TAG + "max-replicas": str(max_replicas)}
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
        sm.add_tags(ResourceArn=endpoint["EndpointArn"], Tags=[{"Key": TAG + "deleting", "Value": "1"}])
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
                {"Key": TAG + "model-id", "Value": adapter.model_id},
                {"Key": TAG + "tenant", "Value": adapter.tenant},
            ],
        )
        zero.watch_adapter(self.client, name, component, self._tags(current.backend_id or ""))  # wakes from zero
        return self.status(name)

    def adapter_endpoint(self, name: str, model_id: str) -> Endpoint | None:
        return adapter_endpoint(name, model_id)

    def remove_adapter(self, name: str, model_id: str) -> EndpointStatus:
        self._delete("DeleteInferenceComponent", InferenceComponentName=adapter_component(name, model_id))
        return self.status(name)

    # --- steps ----------------------------------------------------------------------------------------------
    def _converge(
        self, name: str, endpoint: dict[str, Any], tags: dict[str, str], base: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """One step towards what the tags ask, on an InService endpoint: the base component, then its scaling,
        then instance bounds that hold max_replicas copies."""
        sm = self.client("sagemaker")
        if base is None:
            self._create(
                "CreateInferenceComponent",
                sm.create_inference_component,
                **requests.base_component_request(self.settings, name, tags),
            )
            return self._component(base_component(name))
        low, high = int(tags.get(TAG + "min-replicas", "1")), int(tags.get(TAG + "max-replicas", "1"))
        wanted = f"{low}-{high}"
        if base.get("InferenceComponentStatus") == "InService" and tags.get(TAG + "scaling") != wanted:
            zero.autoscale(self.client, name, low, high, float(tags.get(TAG + "target-concurrency", "5")))
            sm.add_tags(ResourceArn=endpoint["EndpointArn"], Tags=[{"Key": TAG + "scaling", "Value": wanted}])
        variants: list[dict[str, Any]] = endpoint.get("ProductionVariants") or [{}]
        bounds = variants[0].get("ManagedInstanceScaling") or {}
        if bounds.get("MaxInstanceCount") not in (None, high):
            self._create_config(name, high, [], tags.get(TAG + "profile", "llm"))
            sm.update_endpoint(EndpointName=name, EndpointConfigName=config_name(name, high))
        return base

    def _create_config(self, name: str, max_instances: int, tags: list[dict[str, str]], profile: str) -> None:
        request = requests.endpoint_config(self.settings, name, max_instances, tags, profile)
        create("CreateEndpointConfig", self.client("sagemaker").create_endpoint_config, **request)

    def _finish_delete(
        self,
        name: str,
        endpoint: dict[str, Any],
        base: dict[str, Any] | None,
        adapters: dict[str, dict[str, Any]],
        tags: dict[str, str] | None = None,
    ) -> EndpointStatus:
        """Adapters first (they live on the base's copies), then the base, then the endpoint once none is left."""
        if adapters:
            for component, summary in adapters.items():
                if summary.get("InferenceComponentStatus") != "Deleting":
                    self._delete("DeleteInferenceComponent", InferenceComponentName=component)
        elif base is not None:
            if base.get("InferenceComponentStatus") != "Deleting":
                zero.release(self.client, name, tags)  # its scaling, and its scale-from-zero alarms
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
            and (model_id := self._tags(summary["InferenceComponentArn"]).get(TAG + "model-id"))
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

    def _describe(self, operation: str, **params: Any) -> dict[str, Any] | None:
        return describe(self.client("sagemaker"), operation, **params)

    def _create(self, operation: str, call: Any, **params: Any) -> None:
        create(operation, call, **params)

    def _delete(self, operation: str, **params: Any) -> None:
        delete(self.client("sagemaker"), operation, **params)


def create_serving_backend(settings: Settings) -> SageMakerServingBackend:
    return SageMakerServingBackend(settings)
