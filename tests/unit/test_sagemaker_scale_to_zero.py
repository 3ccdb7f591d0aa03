"""Scale to zero on SageMaker, with botocore's Stubber (moto has no inference components): the endpoint config and
the base component that allow zero, AWS's documented scale-out-from-zero policy (a step policy on a
NoCapacityInvocationFailures alarm) for the base and each adapter component, their clean-up, and the proxy's
retries while capacity arrives."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.stub import ANY, Stubber

from functions.compute import sagemaker_invoke, sagemaker_requests, sagemaker_zero
from functions.compute.sagemaker_requests import adapter_component
from functions.compute.serving import Endpoint, EndpointState
from functions.deployments import capacity
from functions.deployments.proxy_errors import rejected
from tests.unit.test_compute_sagemaker_serving import (
    ADAPTER,
    ARN,
    BASE,
    FT,
    NAME,
    POLICY_ARN,
    SPEC_TAGS,
    Aws,
    _target,
    ic_arn,
    settings,
)

ZERO = {**SPEC_TAGS, "ministudio:min-replicas": "0"}
NO_CAPACITY = (
    "Inference Component has no capacity to process this request. ApplicationAutoScaling may be in-progress (if "
    "configured) or try to increase the capacity by invoking UpdateInferenceComponentRuntimeConfig API."
)


class ZeroAws(Aws):
    def __init__(self) -> None:
        super().__init__()
        make = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
        self.cw = botocore.session.get_session().create_client("cloudwatch", **make)
        self.cw_stub = Stubber(self.cw)

    def backend(self, **overrides: Any) -> Any:
        made = super().backend(**overrides)
        made.client._clients["cloudwatch"] = self.cw
        return made

    def wake_policy_and_alarm(self, component: str) -> None:
        policy = sagemaker_zero.step_policy(NAME)
        self.aas_stub.add_response("put_scaling_policy", {"PolicyARN": POLICY_ARN}, policy)
        self.cw_stub.add_response("put_metric_alarm", {}, sagemaker_zero.alarm(component, POLICY_ARN))

    def done(self) -> None:
        super().done()
        self.cw_stub.assert_no_pending_responses()


@pytest.fixture
def aws() -> Iterator[ZeroAws]:
    fake = ZeroAws()
    with fake.stub, fake.aas_stub, fake.cw_stub:
        yield fake


def test_a_zero_minimum_endpoint_may_lose_its_instances_but_starts_with_one_copy() -> None:
    tags = [{"Key": k, "Value": v} for k, v in ZERO.items()]
    config = sagemaker_requests.endpoint_config(settings(), NAME, 3, tags)
    assert config["ProductionVariants"][0]["ManagedInstanceScaling"]["MinInstanceCount"] == 0
    assert sagemaker_requests.base_component_request(settings(), NAME, ZERO)["RuntimeConfig"] == {"CopyCount": 1}
    kept = sagemaker_requests.endpoint_config(
        settings(), NAME, 3, [{"Key": k, "Value": v} for k, v in SPEC_TAGS.items()]
    )
    assert kept["ProductionVariants"][0]["ManagedInstanceScaling"]["MinInstanceCount"] == 1


def test_a_zero_minimum_base_scales_in_to_zero_and_out_on_its_no_capacity_alarm(aws: ZeroAws) -> None:
    aws.endpoint("InService")
    aws.tags(ARN, ZERO)
    aws.components(**{BASE: "InService"})
    aws.base("InService")
    aws.aas_stub.add_response("register_scalable_target", {}, {**_target(), "MinCapacity": 0, "MaxCapacity": 3})
    aws.aas_stub.add_response(
        "put_scaling_policy",
        {"PolicyARN": "arn:tracking"},
        {**_target(), "PolicyName": ANY, "PolicyType": ANY, "TargetTrackingScalingPolicyConfiguration": ANY},
    )
    aws.wake_policy_and_alarm(BASE)
    aws.stub.add_response("add_tags", {}, {"ResourceArn": ARN, "Tags": [{"Key": "ministudio:scaling", "Value": "0-3"}]})

    assert aws.backend().status(NAME).state is EndpointState.ready
    aws.done()
    step = sagemaker_zero.step_policy(NAME)
    assert step["PolicyType"] == "StepScaling" and step["ResourceId"] == f"inference-component/{BASE}"
    assert step["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}
    ]
    alarm = sagemaker_zero.alarm(BASE, POLICY_ARN)
    assert (alarm["MetricName"], alarm["Namespace"]) == ("NoCapacityInvocationFailures", "AWS/SageMaker")
    assert alarm["Dimensions"] == [{"Name": "InferenceComponentName", "Value": BASE}]
    assert alarm["AlarmActions"] == [POLICY_ARN] and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_an_adapter_of_a_zero_minimum_deployment_wakes_the_base_too(aws: ZeroAws) -> None:
    component = adapter_component(NAME, FT)
    for found in ({}, {component: "Creating"}):
        aws.endpoint("InService")
        aws.tags(ARN, {**ZERO, "ministudio:scaling": "0-3"})
        aws.components(**{BASE: "InService"}, **found)
        aws.base("InService")
        for name in found:
            aws.tags(ic_arn(name), {"ministudio:model-id": FT, "ministudio:tenant": "acme"})
        if not found:
            aws.stub.add_response("create_inference_component", {"InferenceComponentArn": ic_arn(component)})
            aws.tags(ARN, ZERO)
            aws.wake_policy_and_alarm(component)

    assert aws.backend().add_adapter(NAME, ADAPTER).adapters == (FT,)
    aws.done()


def test_deleting_a_zero_minimum_base_deletes_its_alarms(aws: ZeroAws) -> None:
    aws.endpoint("InService")
    aws.tags(ARN, {**ZERO, "ministudio:deleting": "1"})
    aws.components(**{BASE: "InService"})
    aws.base("InService")
    aws.aas_stub.add_response("deregister_scalable_target", {}, _target())
    ours = [sagemaker_zero.alarm_name(BASE), sagemaker_zero.alarm_name(adapter_component(NAME, FT))]
    aws.cw_stub.add_response(
        "describe_alarms",
        {"MetricAlarms": [{"AlarmName": n} for n in [*ours, f"{NAME[:32]}-other-alarm"]]},
        {"AlarmNamePrefix": NAME[:32], "AlarmTypes": ["MetricAlarm"]},
    )
    aws.cw_stub.add_response("delete_alarms", {}, {"AlarmNames": ours})
    aws.stub.add_response("delete_inference_component", {}, {"InferenceComponentName": BASE})
    assert aws.backend().status(NAME).state is EndpointState.deleting
    aws.done()


def _runtime(errors: int) -> Any:
    make = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    runtime = botocore.session.get_session().create_client("sagemaker-runtime", **make)
    stub = Stubber(runtime)
    for _ in range(errors):
        stub.add_client_error(
            "invoke_endpoint", service_error_code="ValidationError", service_message=NO_CAPACITY, http_status_code=400
        )
    stub.add_response("invoke_endpoint", {"Body": _Body(b'{"ok": true}'), "ContentType": "application/json"})
    stub.activate()
    return runtime


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data


def test_the_proxy_retries_with_backoff_while_capacity_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capacity, "FIRST_PAUSE_SECONDS", 0.05)
    runtime = _runtime(errors=3)
    endpoint = Endpoint(kind="sagemaker", target=NAME, component=BASE)
    call = lambda: sagemaker_invoke.invoke(endpoint, b"{}", client=runtime)  # noqa: E731
    assert asyncio.run(capacity.retrying(settings(), call, NAME)) == b'{"ok": true}'


def test_capacity_that_does_not_arrive_in_time_is_a_clear_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capacity, "FIRST_PAUSE_SECONDS", 0.05)
    runtime = _runtime(errors=50)
    endpoint = Endpoint(kind="sagemaker", target=NAME, component=BASE)
    call = lambda: sagemaker_invoke.invoke(endpoint, b"{}", client=runtime)  # noqa: E731
    started = time.monotonic()
    with pytest.raises(sagemaker_invoke.InvokeError) as late:
        asyncio.run(capacity.retrying(settings(wake_timeout_seconds=0.5), call, NAME))
    assert time.monotonic() - started < 2 and late.value.status_code == 503
    answer = rejected(late.value.status_code, late.value.body, [])
    assert answer.status_code == 503 and answer.code == "wake_timeout" and "scaling it out from zero" in str(answer)
    assert json.loads(late.value.body)["error"]["code"] == "wake_timeout"


def test_other_refusals_are_not_retried() -> None:
    make = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    runtime = botocore.session.get_session().create_client("sagemaker-runtime", **make)
    with Stubber(runtime) as stub:
        stub.add_client_error("invoke_endpoint", service_error_code="ThrottlingException", http_status_code=400)
        endpoint = Endpoint(kind="sagemaker", target=NAME, component=BASE)
        with pytest.raises(sagemaker_invoke.InvokeError) as refused:
            asyncio.run(
                capacity.retrying(settings(), lambda: sagemaker_invoke.invoke(endpoint, b"{}", client=runtime), NAME)
            )
        assert refused.value.status_code == 429
