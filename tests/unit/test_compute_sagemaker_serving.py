"""The sagemaker serving backend: an endpoint per deployment, the base model and each adapter as inference
components, copy-count autoscaling, and deletion in the order SageMaker allows.

moto 5.2.5 cannot serve these: it has no inference components, its CreateEndpointConfig requires a ModelName in
every production variant (a KeyError otherwise; an endpoint that hosts inference components has none) and its
instance-type list predates ml.g5. So the call sequences are tested with botocore's Stubber: each request is
checked against SageMaker's own API model, and every parameter that matters is asserted exactly."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import botocore.session
import pytest
from botocore.stub import ANY, Stubber

from functions.compute import get_serving_backend, reset_training_backends
from functions.compute.sagemaker_client import SageMakerBackendError
from functions.compute.sagemaker_requests import (
    SCALABLE_DIMENSION,
    adapter_archive,
    adapter_component,
    adapter_endpoint,
    base_component,
    config_name,
    container_env,
)
from functions.compute.sagemaker_serving import SageMakerServingBackend
from functions.compute.serving import AdapterSpec, Endpoint, EndpointState, ServingSpec, serving_name
from functions.core.settings import Settings
from tests.helpers.sagemaker import ROLE, sagemaker_settings

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ministudio-inference-dev:latest"
NAME = serving_name("base", "acme", "HuggingFaceTB/SmolLM2-135M-Instruct", "dep-1")
ARN = f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{NAME}"
BASE = base_component(NAME)
POLICY_ARN = "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:p"
WHEN = datetime(2026, 11, 27, tzinfo=UTC)
FT = "ft:HuggingFaceTB/SmolLM2-135M-Instruct:acme:support:ftjob-k7q2m4xwzp3rt6yz5abc2def"
ADAPTER = AdapterSpec(FT, "s3://arts/artifacts/acme/ftjob-k7q2m4xwzp3rt6yz5abc2def/adapter/", "acme")
DNS = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def settings(**overrides: Any) -> Settings:
    key = "server-key-never-in-the-model"
    fields = dict(artifacts_bucket_name="arts", inference_image_uri=IMAGE, inference_api_key=key)
    return sagemaker_settings(**{"sagemaker_inference_instance_type": "ml.g5.2xlarge", **fields, **overrides})


def spec(**overrides: Any) -> ServingSpec:
    values: dict[str, Any] = {
        "deployment_id": "dep-1",
        "name": NAME,
        "tenant": "acme",
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "min_replicas": 1,
        "max_replicas": 3,
        "prometheus_threshold": 4.0,
        **overrides,
    }
    return ServingSpec(**values)


class Aws:
    """Stubbed sagemaker and application-autoscaling clients, plus the reads one `status` call makes."""

    def __init__(self) -> None:
        session = botocore.session.get_session()
        make = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
        self.sm = session.create_client("sagemaker", **make)
        self.aas = session.create_client("application-autoscaling", **make)
        self.stub, self.aas_stub = Stubber(self.sm), Stubber(self.aas)

    def backend(self, **overrides: Any) -> SageMakerServingBackend:
        return SageMakerServingBackend(
            settings(**overrides), clients={"sagemaker": self.sm, "application-autoscaling": self.aas}
        )

    def endpoint(self, status: str, max_instances: int = 3, **extra: Any) -> None:
        variant = {
            "VariantName": "AllTraffic",
            "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 1, "MaxInstanceCount": max_instances},
        }
        body = {
            "EndpointName": NAME,
            "EndpointArn": ARN,
            "EndpointStatus": status,
            "ProductionVariants": [variant],
            "CreationTime": WHEN,
            "LastModifiedTime": WHEN,
            **extra,
        }
        self.stub.add_response("describe_endpoint", body, {"EndpointName": NAME})

    def no_endpoint(self) -> None:
        self.stub.add_client_error(
            "describe_endpoint",
            service_error_code="ValidationException",
            service_message=f'Could not find endpoint "{ARN}".',
            expected_params={"EndpointName": NAME},
        )

    def tags(self, arn: str, tags: dict[str, str]) -> None:
        self.stub.add_response(
            "list_tags", {"Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}, {"ResourceArn": arn}
        )

    def components(self, **status_by_name: str) -> None:
        items = [
            {
                "InferenceComponentName": name,
                "InferenceComponentArn": ic_arn(name),
                "EndpointName": NAME,
                "EndpointArn": ARN,
                "VariantName": "AllTraffic",
                "InferenceComponentStatus": status,
                "CreationTime": WHEN,
                "LastModifiedTime": WHEN,
            }
            for name, status in status_by_name.items()
        ]
        self.stub.add_response(
            "list_inference_components", {"InferenceComponents": items}, {"EndpointNameEquals": NAME}
        )

    def base(self, status: str, desired: int = 1, current: int = 1, reason: str | None = None) -> None:
        body: dict[str, Any] = {
            "InferenceComponentName": BASE,
            "InferenceComponentArn": ic_arn(BASE),
            "EndpointName": NAME,
            "EndpointArn": ARN,
            "InferenceComponentStatus": status,
            "RuntimeConfig": {"DesiredCopyCount": desired, "CurrentCopyCount": current},
            "CreationTime": WHEN,
            "LastModifiedTime": WHEN,
        }
        if reason:
            body["FailureReason"] = reason
        self.stub.add_response("describe_inference_component", body, {"InferenceComponentName": BASE})

    def done(self) -> None:
        self.stub.assert_no_pending_responses()
        self.aas_stub.assert_no_pending_responses()


def ic_arn(name: str) -> str:
    return f"arn:aws:sagemaker:us-east-1:123456789012:inference-component/{name}"


SPEC_TAGS = {
    "ministudio:deployment-id": "dep-1",
    "ministudio:tenant": "acme",
    "ministudio:model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "ministudio:gpu-count": "1",
    "ministudio:profile": "llm",
    "ministudio:min-replicas": "1",
    "ministudio:max-replicas": "3",
    "ministudio:target-concurrency": "4",
}
SCALED = {**SPEC_TAGS, "ministudio:scaling": "1-3"}


@pytest.fixture
def aws() -> Iterator[Aws]:
    fake = Aws()
    with fake.stub, fake.aas_stub:
        yield fake


# --- names ----------------------------------------------------------------------------------------------------
def test_every_resource_name_is_dns_safe_and_fits_63_characters() -> None:
    long_name = serving_name("ft", "a-very-long-tenant-name-here", "org/" + "m" * 80, "dep-2")
    assert len(long_name) == 63
    names = [
        base_component(long_name),
        adapter_component(long_name, FT),
        config_name(long_name, 3),
        config_name(long_name, 4),
        base_component(NAME),
    ]
    assert all(DNS.fullmatch(n) and len(n) <= 63 for n in names), names
    assert len(set(names)) == len(names)
    other = long_name[:-1] + ("0" if long_name[-1] != "0" else "1")  # the same up to the last character
    assert base_component(other) != base_component(long_name)
    assert adapter_component(NAME, FT) != adapter_component(NAME, FT + "x")


# --- deploy -----------------------------------------------------------------------------------------------------
def test_deploy_creates_model_config_and_endpoint(aws: Aws) -> None:
    aws.no_endpoint()
    tags = [{"Key": k, "Value": v} for k, v in SPEC_TAGS.items()]
    env = {
        "ALLOW_NO_API_KEY": "1",  # InvokeEndpoint is IAM-authorized: no bearer header reaches the container
        "MODEL_REF": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "MAX_LORAS": "8",
        "ADAPTER_SOURCE": "s3://arts/artifacts/{tenant}/{job_id}/adapter/",
        "AWS_REGION": "us-east-1",
    }
    aws.stub.add_response(
        "create_model",
        {"ModelArn": f"arn:aws:sagemaker:us-east-1:123456789012:model/{NAME}"},
        {
            "ModelName": NAME,
            "ExecutionRoleArn": ROLE,
            "PrimaryContainer": {"Image": IMAGE, "Environment": env},
            "Tags": tags,
        },
    )
    aws.stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c"},
        {**_endpoint_config(3), "Tags": tags},
    )
    aws.stub.add_response(
        "create_endpoint",
        {"EndpointArn": ARN},
        {"EndpointName": NAME, "EndpointConfigName": config_name(NAME, 3), "Tags": tags},
    )
    aws.endpoint("Creating")
    aws.tags(ARN, SPEC_TAGS)
    aws.components()

    status = aws.backend().deploy(spec())

    aws.done()
    assert status.state is EndpointState.deploying and status.backend_id == ARN
    assert status.endpoint == Endpoint(kind="sagemaker", target=NAME, component=BASE)


def test_deploy_of_an_existing_endpoint_creates_nothing(aws: Aws) -> None:
    aws.endpoint("Creating")  # found: only status reads follow, any create would be an unstubbed call
    aws.endpoint("Creating")
    aws.tags(ARN, SPEC_TAGS)
    aws.components()
    assert aws.backend().deploy(spec()).state is EndpointState.deploying
    aws.done()


def test_a_half_done_deploy_is_finished_by_the_retry(aws: Aws) -> None:
    aws.no_endpoint()
    exists = "ValidationException"
    aws.stub.add_client_error("create_model", exists, f'Cannot create already existing model "arn:{NAME}".')
    aws.stub.add_client_error("create_endpoint_config", exists, "Cannot create already existing endpoint configuration")
    aws.stub.add_response("create_endpoint", {"EndpointArn": ARN})
    aws.endpoint("Creating")
    aws.tags(ARN, SPEC_TAGS)
    aws.components()
    assert aws.backend().deploy(spec()).state is EndpointState.deploying
    aws.done()


def test_the_container_gets_the_start_adapters_but_never_the_server_key() -> None:
    env = container_env(settings(), spec(adapters=(ADAPTER,), engine="vllm"))
    assert json.loads(env["LORA_MODULES"]) == [f"{FT}={ADAPTER.artifact_uri}"]
    assert env["ENGINE"] == "vllm"
    assert "server-key-never-in-the-model" not in json.dumps(env) and "API_KEY" not in env


@pytest.mark.parametrize(("low", "high"), [(-1, 2), (3, 2), (0, 0)])
def test_replica_ranges_sagemaker_cannot_keep_are_refused(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="0 <= min <= max"):
        SageMakerServingBackend(settings()).deploy(spec(min_replicas=low, max_replicas=high))


def test_deploy_without_an_image_names_the_setting(aws: Aws) -> None:
    aws.no_endpoint()
    with pytest.raises(SageMakerBackendError, match="INFERENCE_IMAGE_URI"):
        aws.backend(inference_image_uri=None).deploy(spec())


# --- status moves the deployment on -------------------------------------------------------------------------
def test_an_endpoint_in_service_gets_its_base_component(aws: Aws) -> None:
    aws.endpoint("InService")
    aws.tags(ARN, SPEC_TAGS)
    aws.components()
    aws.stub.add_response(
        "create_inference_component",
        {"InferenceComponentArn": ic_arn(BASE)},
        {
            "InferenceComponentName": BASE,
            "EndpointName": NAME,
            "VariantName": "AllTraffic",
            "Specification": {
                "ModelName": NAME,
                "StartupParameters": {
                    "ModelDataDownloadTimeoutInSeconds": 900,
                    "ContainerStartupHealthCheckTimeoutInSeconds": 900,
                },
                "ComputeResourceRequirements": {"MinMemoryRequiredInMb": 1024, "NumberOfAcceleratorDevicesRequired": 1},
            },
            "RuntimeConfig": {"CopyCount": 1},
        },
    )
    aws.base("Creating", desired=1, current=0)

    status = aws.backend().status(NAME)

    aws.done()
    assert (status.state, status.replicas, status.ready_replicas) == (EndpointState.deploying, 1, 0)


def test_a_base_component_in_service_gets_copy_autoscaling_once(aws: Aws) -> None:
    aws.endpoint("InService")
    aws.tags(ARN, SPEC_TAGS)
    aws.components(**{BASE: "InService"})
    aws.base("InService", desired=1, current=1)
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"inference-component/{BASE}",
        "ScalableDimension": "sagemaker:inference-component:DesiredCopyCount",
    }
    aws.aas_stub.add_response("register_scalable_target", {}, {**target, "MinCapacity": 1, "MaxCapacity": 3})
    aws.aas_stub.add_response(
        "put_scaling_policy",
        {"PolicyARN": POLICY_ARN},
        {
            **target,
            "PolicyName": ANY,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution"
                },
                "TargetValue": 4.0,
                "ScaleOutCooldown": 60,
                "ScaleInCooldown": 300,
            },
        },
    )
    aws.stub.add_response("add_tags", {}, {"ResourceArn": ARN, "Tags": [{"Key": "ministudio:scaling", "Value": "1-3"}]})

    status = aws.backend().status(NAME)

    aws.done()
    assert (status.state, status.replicas, status.ready_replicas) == (EndpointState.ready, 1, 1)
    # And once applied (the tag says so), the next status only reads
    aws.endpoint("InService")
    aws.tags(ARN, SCALED)
    aws.components(**{BASE: "InService"})
    aws.base("InService", desired=2, current=2)
    assert aws.backend().status(NAME).ready_replicas == 2
    aws.done()


ENDPOINT_STATES = {
    "Creating": EndpointState.deploying,
    "Updating": EndpointState.deploying,
    "SystemUpdating": EndpointState.deploying,
    "RollingBack": EndpointState.deploying,
    "OutOfService": EndpointState.deploying,
    "InService": EndpointState.deploying,  # no base component yet: not ready
    "Deleting": EndpointState.deleting,
    "Failed": EndpointState.failed,
    "UpdateRollbackFailed": EndpointState.failed,
}
COMPONENT_STATES = {
    "InService": EndpointState.ready,
    "Creating": EndpointState.deploying,
    "Updating": EndpointState.ready,
    "Failed": EndpointState.failed,
    "Deleting": EndpointState.deleting,
}


def test_every_status_sagemaker_defines_is_mapped() -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    endpoint = model.operation_model("DescribeEndpoint").output_shape.members["EndpointStatus"]
    component = model.operation_model("DescribeInferenceComponent").output_shape.members["InferenceComponentStatus"]
    assert set(ENDPOINT_STATES) == set(endpoint.enum)
    assert set(COMPONENT_STATES) == set(component.enum)


@pytest.mark.parametrize(("status", "expected"), ENDPOINT_STATES.items())
def test_endpoint_states_before_the_base_component(aws: Aws, status: str, expected: EndpointState) -> None:
    aws.endpoint(status, FailureReason="capacity error: no ml.g5.2xlarge" if "Failed" in status else "")
    aws.tags(ARN, SPEC_TAGS)
    aws.components()
    if status == "InService":  # moves on: the base component is asked for
        aws.stub.add_response("create_inference_component", {"InferenceComponentArn": ic_arn(BASE)})
        aws.base("Creating", desired=1, current=0)
    got = aws.backend().status(NAME)
    aws.done()
    assert got.state is expected
    if expected is EndpointState.failed:
        assert got.message == "capacity error: no ml.g5.2xlarge"


@pytest.mark.parametrize(("status", "expected"), COMPONENT_STATES.items())
def test_base_component_states(aws: Aws, status: str, expected: EndpointState) -> None:
    aws.endpoint("InService")
    aws.tags(ARN, SCALED)
    aws.components(**{BASE: status})
    aws.base(status, reason="the container failed /ping" if status == "Failed" else None)
    got = aws.backend().status(NAME)
    aws.done()
    assert got.state is expected
    if status == "Failed":
        assert got.message == "the container failed /ping"


def test_a_component_with_no_copy_up_yet_is_not_ready(aws: Aws) -> None:
    aws.endpoint("InService")
    aws.tags(ARN, SCALED)
    aws.components(**{BASE: "InService"})
    aws.base("InService", desired=1, current=0)
    assert aws.backend().status(NAME).state is EndpointState.deploying


def test_status_of_a_missing_deployment(aws: Aws) -> None:
    aws.no_endpoint()
    assert aws.backend().status(NAME).state is EndpointState.missing


# --- scale ----------------------------------------------------------------------------------------------------
def test_scale_updates_copy_bounds_and_the_instance_ceiling(aws: Aws) -> None:
    aws.endpoint("InService")
    aws.stub.add_response(
        "add_tags",
        {},
        {
            "ResourceArn": ARN,
            "Tags": [
                {"Key": "ministudio:min-replicas", "Value": "2"},
                {"Key": "ministudio:max-replicas", "Value": "6"},
            ],
        },
    )
    aws.endpoint("InService", max_instances=3)
    aws.tags(ARN, {**SCALED, "ministudio:min-replicas": "2", "ministudio:max-replicas": "6"})
    aws.components(**{BASE: "InService"})
    aws.base("InService")
    aws.aas_stub.add_response("register_scalable_target", {}, {**_target(), "MinCapacity": 2, "MaxCapacity": 6})
    aws.aas_stub.add_response("put_scaling_policy", {"PolicyARN": POLICY_ARN})
    aws.stub.add_response("add_tags", {}, {"ResourceArn": ARN, "Tags": [{"Key": "ministudio:scaling", "Value": "2-6"}]})
    aws.stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c"},
        _endpoint_config(6),
    )
    aws.stub.add_response(
        "update_endpoint", {"EndpointArn": ARN}, {"EndpointName": NAME, "EndpointConfigName": config_name(NAME, 6)}
    )

    status = aws.backend().scale(NAME, 2, 6)

    aws.done()
    assert status.state is EndpointState.ready


def _endpoint_config(max_instances: int) -> dict[str, Any]:
    """The CreateEndpointConfig request for NAME's endpoint scaled to at most `max_instances` ml.g5.2xlarge."""
    scaling = {"Status": "ENABLED", "MinInstanceCount": 1, "MaxInstanceCount": max_instances}
    variant = {
        "VariantName": "AllTraffic",
        "InstanceType": "ml.g5.2xlarge",
        "InitialInstanceCount": 1,
        "ManagedInstanceScaling": scaling,
        "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
    }
    # The role is required for an endpoint that hosts inference components.
    return {
        "EndpointConfigName": config_name(NAME, max_instances),
        "ExecutionRoleArn": ROLE,
        "ProductionVariants": [variant],
    }


def _target() -> dict[str, str]:
    return {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"inference-component/{BASE}",
        "ScalableDimension": SCALABLE_DIMENSION,
    }


def test_scale_of_a_missing_deployment_is_missing(aws: Aws) -> None:
    aws.no_endpoint()
    assert aws.backend().scale(NAME, 1, 2).state is EndpointState.missing


# --- adapters ---------------------------------------------------------------------------------------------------
def _ready(aws: Aws, adapters: dict[str, str] | None = None) -> None:
    aws.endpoint("InService")
    aws.tags(ARN, SCALED)
    aws.components(**{BASE: "InService"}, **(adapters or {}))
    aws.base("InService")
    for component in adapters or {}:
        aws.tags(ic_arn(component), {"ministudio:model-id": FT, "ministudio:tenant": "acme"})


def test_add_adapter_creates_an_inference_component_on_the_base(aws: Aws) -> None:
    component = adapter_component(NAME, FT)
    _ready(aws)
    aws.stub.add_response(
        "create_inference_component",
        {"InferenceComponentArn": ic_arn(component)},
        {
            "InferenceComponentName": component,
            "EndpointName": NAME,
            "Specification": {
                "BaseInferenceComponentName": BASE,
                "Container": {
                    "ArtifactUrl": "s3://arts/artifacts/acme/ftjob-k7q2m4xwzp3rt6yz5abc2def/"
                    "ftjob-k7q2m4xwzp3rt6yz5abc2def/output/model.tar.gz"
                },
            },
            "Tags": [{"Key": "ministudio:model-id", "Value": FT}, {"Key": "ministudio:tenant", "Value": "acme"}],
        },
    )
    aws.tags(ARN, SCALED)  # read for the range: a deployment that never sleeps needs no alarm on the adapter
    _ready(aws, {component: "Creating"})

    status = aws.backend().add_adapter(NAME, ADAPTER)

    aws.done()
    assert status.adapters == (FT,)
    assert adapter_endpoint(NAME, FT) == Endpoint(kind="sagemaker", target=NAME, component=component)


def test_add_adapter_twice_creates_one_component(aws: Aws) -> None:
    _ready(aws, {adapter_component(NAME, FT): "InService"})  # and no create: it would be unstubbed
    assert aws.backend().add_adapter(NAME, ADAPTER).adapters == (FT,)
    aws.done()


def test_add_adapter_before_the_base_is_ready_is_refused(aws: Aws) -> None:
    aws.endpoint("Creating")
    aws.tags(ARN, SPEC_TAGS)
    aws.components()
    with pytest.raises(SageMakerBackendError, match="deploying"):
        aws.backend().add_adapter(NAME, ADAPTER)


def test_add_adapter_to_a_missing_deployment(aws: Aws) -> None:
    aws.no_endpoint()
    with pytest.raises(LookupError):
        aws.backend().add_adapter(NAME, ADAPTER)


def test_adapter_archives() -> None:
    tarball = AdapterSpec(FT, "s3://arts/somewhere/adapter.tar.gz", "acme")
    assert adapter_archive(tarball) == "s3://arts/somewhere/adapter.tar.gz"
    with pytest.raises(ValueError, match="not under tenant acme"):
        adapter_archive(AdapterSpec(FT, "s3://arts/artifacts/other/ftjob-x/adapter/", "acme"))
    with pytest.raises(ValueError, match="neither"):
        adapter_archive(AdapterSpec(FT, "s3://arts/elsewhere/adapter/", "acme"))


def test_remove_adapter_deletes_its_component(aws: Aws) -> None:
    component = adapter_component(NAME, FT)
    aws.stub.add_response("delete_inference_component", {}, {"InferenceComponentName": component})
    _ready(aws)
    assert aws.backend().remove_adapter(NAME, FT).adapters == ()
    aws.done()


def test_removing_an_adapter_that_is_not_there_is_fine(aws: Aws) -> None:
    aws.stub.add_client_error("delete_inference_component", "ValidationException", "Could not find inference component")
    _ready(aws)
    assert aws.backend().remove_adapter(NAME, FT).state is EndpointState.ready
    aws.done()


# --- delete ---------------------------------------------------------------------------------------------------
def test_delete_goes_adapters_then_base_then_endpoint(aws: Aws) -> None:
    component = adapter_component(NAME, FT)
    deleting = [{"Key": "ministudio:deleting", "Value": "1"}]
    # First call: adapters go
    aws.endpoint("InService")
    aws.stub.add_response("add_tags", {}, {"ResourceArn": ARN, "Tags": deleting})
    aws.components(**{BASE: "InService", component: "InService"})
    aws.base("InService")
    aws.stub.add_response("delete_inference_component", {}, {"InferenceComponentName": component})
    assert aws.backend().delete(NAME).state is EndpointState.deleting
    aws.done()
    # Next status: the base goes, with its scaling target
    aws.endpoint("InService")
    aws.tags(ARN, {**SCALED, "ministudio:deleting": "1"})
    aws.components(**{BASE: "InService"})
    aws.base("InService")
    aws.aas_stub.add_response("deregister_scalable_target", {}, _target())
    aws.stub.add_response("delete_inference_component", {}, {"InferenceComponentName": BASE})
    assert aws.backend().status(NAME).state is EndpointState.deleting
    aws.done()
    # Next status: nothing left on the endpoint, so the endpoint, its configs and the model go
    aws.endpoint("InService")
    aws.tags(ARN, {**SCALED, "ministudio:deleting": "1"})
    aws.components()
    aws.stub.add_response("delete_endpoint", {}, {"EndpointName": NAME})
    configs = [config_name(NAME, 3), config_name(NAME, 6)]
    aws.stub.add_response(
        "list_endpoint_configs",
        {
            "EndpointConfigs": [
                {"EndpointConfigName": c, "EndpointConfigArn": f"arn:{c}", "CreationTime": WHEN}
                for c in [*configs, f"{NAME}-unrelated"]
            ]
        },
    )
    for c in configs:
        aws.stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": c})
    aws.stub.add_response("delete_model", {}, {"ModelName": NAME})
    assert aws.backend().status(NAME).state is EndpointState.deleting
    aws.done()
    # Then it is gone
    aws.no_endpoint()
    assert aws.backend().status(NAME).state is EndpointState.missing


def test_delete_of_a_missing_deployment_is_missing_and_clears_leftovers(aws: Aws) -> None:
    aws.no_endpoint()
    aws.stub.add_response("list_endpoint_configs", {"EndpointConfigs": []})
    aws.stub.add_client_error("delete_model", "ValidationException", f'Could not find model "arn:{NAME}".')
    assert aws.backend().delete(NAME).state is EndpointState.missing
    aws.done()


def test_a_refused_delete_is_an_error_not_missing(aws: Aws) -> None:
    aws.no_endpoint()
    aws.stub.add_response("list_endpoint_configs", {"EndpointConfigs": []})
    aws.stub.add_client_error("delete_model", "AccessDeniedException", "not allowed")
    with pytest.raises(SageMakerBackendError, match="DeleteModel"):
        aws.backend().delete(NAME)


def test_the_factory_builds_the_sagemaker_serving_backend() -> None:
    try:
        assert isinstance(get_serving_backend(settings()), SageMakerServingBackend)
    finally:
        reset_training_backends()
