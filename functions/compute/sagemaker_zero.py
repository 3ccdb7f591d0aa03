"""Scale to and from zero on SageMaker, as AWS documents it for inference components ("Scale an endpoint to zero
instances"): the endpoint config lets managed instance scaling go to MinInstanceCount 0; the base component's
scalable target has MinCapacity 0, so target tracking scales an idle base in to zero copies; and since target
tracking cannot scale out of zero, a step scaling policy (+1 copy) is the action of a CloudWatch alarm on
NoCapacityInvocationFailures, the invocations that found no copy, of the base component and of every adapter
component riding on it. While that copy (and, at zero instances, its instance) starts, the proxy retries the
invocation with backoff (functions/deployments/capacity.py): those failed invocations are what the alarm counts.

The base's copies are started with at least one (as on EKS: the first rollout proves the image and model work).
"""

from __future__ import annotations

from typing import Any

from functions.compute.sagemaker_client import SageMakerBackendError, derived_name, error_code, error_message
from functions.compute.sagemaker_requests import SCALABLE_DIMENSION, TAG, base_component, scaling

METRIC = "NoCapacityInvocationFailures"
ALARM_PERIOD_SECONDS = 30  # the alarm's period: a held request waits about this long before the scale-out starts
STEP_COOLDOWN_SECONDS = 60


def alarm_name(component: str) -> str:
    return derived_name(component, "wake")


def step_policy(name: str) -> dict[str, Any]:
    """Application Auto Scaling's step policy that adds one copy to the base component (the alarms' action)."""
    return {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"inference-component/{base_component(name)}",
        "ScalableDimension": SCALABLE_DIMENSION,
        "PolicyName": derived_name(name, "wake"),
        "PolicyType": "StepScaling",
        "StepScalingPolicyConfiguration": {
            "AdjustmentType": "ChangeInCapacity",
            "MetricAggregationType": "Maximum",
            "Cooldown": STEP_COOLDOWN_SECONDS,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
        },
    }


def alarm(component: str, policy_arn: str) -> dict[str, Any]:
    """CloudWatch's alarm on a component's invocations that found no copy, whose action is the step policy."""
    return {
        "AlarmName": alarm_name(component),
        "AlarmDescription": f"wake {component} from zero copies (Mini Studio scale to zero)",
        "ActionsEnabled": True,
        "AlarmActions": [policy_arn],
        "MetricName": METRIC,
        "Namespace": "AWS/SageMaker",
        "Statistic": "Maximum",
        "Dimensions": [{"Name": "InferenceComponentName", "Value": component}],
        "Period": ALARM_PERIOD_SECONDS,
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "missing",
    }


def autoscale(client: Any, name: str, low: int, high: int, target: float) -> None:
    """The base component's scaling: target tracking within low..high, and from zero the step policy and its alarm."""
    target_request, policy_request = scaling(name, low, high, target)
    aas = client("application-autoscaling")
    aas.register_scalable_target(**target_request)
    aas.put_scaling_policy(**policy_request)
    if low == 0:
        wake_on_invocations(client, name, base_component(name))


def wake_on_invocations(client: Any, name: str, component: str) -> None:
    """Invocations of `component` that find no copy scale the base out of zero (idempotent: same names)."""
    policy = client("application-autoscaling").put_scaling_policy(**step_policy(name))
    client("cloudwatch").put_metric_alarm(**alarm(component, policy["PolicyARN"]))


def watch_adapter(client: Any, name: str, component: str, endpoint_tags: dict[str, str]) -> None:
    """An adapter component of a deployment that may sleep at zero gets its own alarm (its invocations count under
    its own name)."""
    if endpoint_tags.get(TAG + "min-replicas") == "0":
        wake_on_invocations(client, name, component)


def release(client: Any, name: str, endpoint_tags: dict[str, str] | None) -> None:
    """Deregister the base component's scalable target (and its policies) and delete its alarms."""
    from botocore.exceptions import ClientError

    try:
        client("application-autoscaling").deregister_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=f"inference-component/{base_component(name)}",
            ScalableDimension=SCALABLE_DIMENSION,
        )
    except ClientError as exc:
        if error_code(exc) != "ObjectNotFoundException":
            raise SageMakerBackendError(f"DeregisterScalableTarget {name}: {error_message(exc)}") from exc
    forget(client, name, endpoint_tags)


def forget(client: Any, name: str, endpoint_tags: dict[str, str] | None) -> None:
    """Delete the deployment's alarms, as its base component goes (deregistering the scalable target deletes the
    policies, not the alarms). Their names all begin with the deployment's (derived_name keeps its head)."""
    if (endpoint_tags or {}).get(TAG + "min-replicas") != "0":
        return
    cloudwatch = client("cloudwatch")
    found = cloudwatch.describe_alarms(AlarmNamePrefix=name[:32], AlarmTypes=["MetricAlarm"])
    names = [a["AlarmName"] for a in found.get("MetricAlarms", []) if a["AlarmName"].endswith("-wake")]
    if names:
        cloudwatch.delete_alarms(AlarmNames=names)
