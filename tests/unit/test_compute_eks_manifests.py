"""Every manifest the eks backend renders is one the cluster accepts: RayJob and ScaledObject against the upstream
CRD schemas (../shared/k8s-crds, or K8S_CRD_DIR), Deployment/Service/Secret against Kubernetes' own schemas
(kubernetes-validate, strict) — and each says what the issue asks of it.

Unknown fields are refused too: the API server prunes (or, with strict field validation, rejects) fields a CRD does
not declare, so a misspelt `shutdownAfterJobFinishes` would otherwise vanish silently.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from functions.compute.base import TrainingSpec, run_name
from functions.compute.k8s import rayjob, serving
from functions.compute.serving import AdapterSpec, ServingSpec, queue_depth_query, serving_name
from functions.core.settings import Settings
from functions.deployments import activity

KUBERNETES_VERSION = "1.35"  # infra/cdk/stacks/compute_eks.py KUBERNETES_VERSION
CRD_DIR = Path(os.environ.get("K8S_CRD_DIR") or Path(__file__).resolve().parents[3] / "shared" / "k8s-crds")
CRD_FILES = {
    ("ray.io/v1", "RayJob"): "ray.io_rayjobs.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
}
TRAINER = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ministudio-trainer:1"
INFERENCE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ministudio-inference:1"
JOB_ID = "ftjob-abcdefghijklmnopqrstuvwx"
FT_MODEL = f"ft:HuggingFaceTB/SmolLM2-135M-Instruct:acme:v1:{JOB_ID}"


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "compute_backend": "eks",
        "trainer_image_uri": TRAINER,
        "inference_image_uri": INFERENCE,
        "eks_cluster_name": "studio",
        "inference_api_key": "server-key-123",
        "artifacts_bucket_name": "acme-artifacts",
        "job_max_runtime_seconds": 7200,
        **overrides,
    }
    return Settings(**values)


def training_spec() -> TrainingSpec:
    return TrainingSpec(
        job_id=JOB_ID,
        tenant="acme",
        model="HuggingFaceTB/SmolLM2-135M-Instruct",
        training_file="s3://acme-datasets/datasets/acme/file-1/train's data.jsonl",  # a quote the shell must keep
        output=f"s3://acme-artifacts/artifacts/acme/{JOB_ID}/",
        hyperparameters={"n_epochs": 2, "learning_rate_multiplier": "auto"},
        suffix="v1",
    )


def serving_spec(**overrides: Any) -> ServingSpec:
    name = serving_name("base", "acme", "HuggingFaceTB/SmolLM2-135M-Instruct", "dep-123")
    values: dict[str, Any] = {
        "deployment_id": "dep-123",
        "name": name,
        "tenant": "acme",
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "gpu_count": 1,
        "min_replicas": 1,
        "max_replicas": 3,
        "prometheus_threshold": 4.5,
        **overrides,
    }
    return ServingSpec(**values)


def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    if not CRD_DIR.is_dir():
        pytest.skip(
            f"CRD schemas not found at {CRD_DIR}: fetch ray.io_rayjobs.yaml (ray-project/kuberay "
            "ray-operator/config/crd/bases) and keda.sh_scaledobjects.yaml (kedacore/keda config/crd/bases) "
            "into a folder and point K8S_CRD_DIR at it"
        )
    crd = _load(CRD_FILES[(api_version, kind)])
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    served = {v["name"]: v for v in crd["spec"]["versions"]}
    return dict(served[version]["schema"]["openAPIV3Schema"])


@functools.cache
def _load(filename: str) -> dict[str, Any]:
    """Parsed once per session: the RayJob CRD is 1.7 MB of YAML (3 s with libyaml, 16 s without)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return dict(yaml.load((CRD_DIR / filename).read_text(), Loader=loader))


def unknown_fields(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Fields the schema does not declare (where it declares properties and keeps no unknown fields)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        props, extra = schema.get("properties"), schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                found += unknown_fields(item, props[key], f"{where}.{key}")
            elif isinstance(extra, dict):
                found += unknown_fields(item, extra, f"{where}.{key}")
            elif props is not None:
                found.append(f"{where}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{where}[{i}]")
    return found


def validate(manifest: dict[str, Any]) -> None:
    key = (manifest["apiVersion"], manifest["kind"])
    if key in CRD_FILES:
        schema = crd_schema(*key)
        jsonschema.Draft7Validator(schema).validate(manifest)
        assert unknown_fields(manifest, schema) == []
    else:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    # What `metadata.name` must be for every one of these kinds: a DNS-1123 label (Services are the strictest).
    assert run_name(manifest["metadata"]["name"]) == manifest["metadata"]["name"]


# --- the validators themselves catch mistakes ------------------------------------------------------------------
def test_a_misspelt_rayjob_field_is_refused() -> None:
    manifest = rayjob.render(run_name(JOB_ID), training_spec(), settings())
    manifest["spec"]["shutdownAfterJobFinish"] = manifest["spec"].pop("shutdownAfterJobFinishes")
    with pytest.raises(AssertionError, match="shutdownAfterJobFinish"):
        validate(manifest)


def test_a_wrongly_typed_scaled_object_field_is_refused() -> None:
    manifest = serving.render_scaled_object(serving_spec(), settings())
    manifest["spec"]["triggers"][0]["metadata"]["threshold"] = 4.5  # KEDA trigger metadata is strings only
    with pytest.raises(jsonschema.ValidationError):
        validate(manifest)


def test_a_wrong_deployment_field_is_refused() -> None:
    manifest = serving.render_deployment(serving_spec(), settings())
    manifest["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(manifest)


# --- RayJob ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gpus", [1, 0])
def test_rayjob_validates_and_runs_the_trainer_with_the_spec(gpus: int) -> None:
    spec = training_spec()
    manifest = rayjob.render(run_name(JOB_ID), spec, settings(eks_training_gpus=gpus))
    validate(manifest)
    body = manifest["spec"]
    assert manifest["metadata"] == {
        "name": JOB_ID,
        "namespace": "ministudio",
        "labels": {
            "app.kubernetes.io/managed-by": "ministudio",
            "ministudio.io/job-id": JOB_ID,
            "ministudio.io/tenant": "acme",
        },
    }
    assert body["shutdownAfterJobFinishes"] is True
    assert body["ttlSecondsAfterFinished"] == 3600
    assert body["activeDeadlineSeconds"] == 7200
    # The entrypoint, split as a shell would, is the trainer's CLI with the spec; the trainer's own parser reads it.
    argv = shlex.split(body["entrypoint"])
    assert argv[:2] == ["ministudio-train", "--spec-json"]
    assert json.loads(argv[2]) == spec.to_json()
    # The trainer's own spec reader (what `--spec-json` feeds; its CLI module would import torch) accepts it.
    from ministudio_train.spec import load_spec

    parsed = load_spec(argparse.Namespace(spec=None, spec_json=argv[2]), environ={})
    assert (parsed.job_id, parsed.training_file, parsed.output) == (spec.job_id, spec.training_file, spec.output)

    pod = body["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    head = pod["containers"][0]
    assert head["image"] == TRAINER and pod["serviceAccountName"] == "ministudio-workload"
    if gpus:
        assert head["resources"]["limits"]["nvidia.com/gpu"] == "1" and body["entrypointNumGpus"] == 1
        assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    else:
        assert "nvidia.com/gpu" not in head["resources"]["limits"] and "entrypointNumGpus" not in body
        assert "tolerations" not in pod


def test_rayjob_needs_the_trainer_image() -> None:
    with pytest.raises(ValueError, match="TRAINER_IMAGE_URI"):
        rayjob.render(run_name(JOB_ID), training_spec(), settings(trainer_image_uri=None))


# --- serving -----------------------------------------------------------------------------------------------------
def test_deployment_runs_the_vllm_server_with_probes_key_and_gpu() -> None:
    spec = serving_spec(
        adapters=(AdapterSpec(FT_MODEL, f"s3://acme-artifacts/artifacts/acme/{JOB_ID}/adapter/", "acme"),)
    )
    manifest = serving.render_deployment(spec, settings())
    validate(manifest)
    template = manifest["spec"]["template"]
    pod, container = template["spec"], template["spec"]["containers"][0]
    assert container["image"] == INFERENCE and container["command"] == ["ministudio-serve"]
    # The server's own CLI accepts the arguments and reads them as intended.
    from ministudio_serve.cli import parse

    served = parse(container["args"])
    assert (served.engine, served.model, served.host, served.port, served.max_loras) == (
        "vllm",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "0.0.0.0",
        8000,
        8,
    )
    assert served.adapter_source == "s3://acme-artifacts/artifacts/{tenant}/{job_id}/adapter/"
    assert served.lora_modules == [f"{FT_MODEL}=s3://acme-artifacts/artifacts/acme/{JOB_ID}/adapter/"]
    env = {e["name"]: e for e in container["env"]}
    assert env["API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "ministudio-inference-key", "key": "api-key"}}
    assert "server-key-123" not in json.dumps(manifest)  # the key lives in the Secret only
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics",
    }
    labels = template["metadata"]["labels"]
    assert labels["ministudio.io/deployment"] == spec.name and labels["deployment"] == spec.name
    assert manifest["spec"]["selector"] == {"matchLabels": {"ministudio.io/deployment": spec.name}}
    assert pod["serviceAccountName"] == "ministudio-workload" and manifest["metadata"]["namespace"] == "ministudio"


def test_service_is_an_internal_nlb_to_the_deployments_pods_on_the_server_port() -> None:
    spec = serving_spec()
    service = serving.render_service(spec, settings())
    validate(service)
    deployment = serving.render_deployment(spec, settings())
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    # The control plane runs outside the cluster: a LoadBalancer Service that the AWS Load Balancer Controller
    # turns into an internal NLB registering pod IPs, not a ClusterIP name only the cluster's DNS resolves.
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["allocateLoadBalancerNodePorts"] is False
    annotations = service["metadata"]["annotations"]
    assert {
        "service.beta.kubernetes.io/aws-load-balancer-type": "external",
        "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
    }.items() <= annotations.items()
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-path"] == "/ready"
    assert all(isinstance(v, str) for v in annotations.values())  # annotation values are strings only
    assert serving.load_balancer_url(service) is None  # no hostname until the controller provisions the NLB


def test_secret_holds_the_control_planes_server_key() -> None:
    secret = serving.render_secret(settings())
    validate(secret)
    assert secret["stringData"] == {"api-key": "server-key-123"}
    with pytest.raises(ValueError, match="INFERENCE_API_KEY"):
        serving.render_secret(settings(inference_api_key=None))


@pytest.mark.parametrize(("min_replicas", "max_replicas"), [(1, 3), (0, 2), (2, 2)])
def test_scaled_object_scales_on_queue_depth_within_the_asked_range(min_replicas: int, max_replicas: int) -> None:
    spec = serving_spec(min_replicas=min_replicas, max_replicas=max_replicas)
    manifest = serving.render_scaled_object(spec, settings(keda_prometheus_url="http://prom.monitoring:9090"))
    validate(manifest)
    body = manifest["spec"]
    assert body["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name}
    assert (body["minReplicaCount"], body["maxReplicaCount"]) == (min_replicas, max_replicas)
    assert body["cooldownPeriod"] == (300 if min_replicas else spec.idle_seconds)  # KEDA's wait before 1 → 0
    (trigger,) = body["triggers"]  # no Redis for KEDA to read (KEDA_REDIS_ADDRESS unset): Prometheus alone
    assert trigger["type"] == "prometheus" and "metricName" not in trigger["metadata"]
    assert trigger["metadata"] == {
        "serverAddress": "http://prom.monitoring:9090",
        "query": queue_depth_query(spec.name),
        "threshold": "4.5",
        "activationThreshold": "0",
    }
    # A deployment asked for replicas starts with at least one; a zero-minimum one too, to prove it can serve.
    assert serving.render_deployment(spec, settings())["spec"]["replicas"] == max(1, min_replicas)


def test_a_zero_minimum_deployment_also_wakes_on_the_requests_the_control_plane_holds_for_it() -> None:
    asleep = serving_spec(min_replicas=0, max_replicas=3, idle_seconds=120)
    with_redis = settings(keda_redis_address="cache.abc123.use1.cache.amazonaws.com:6379")
    manifest = serving.render_scaled_object(asleep, with_redis)
    validate(manifest)
    body = manifest["spec"]
    assert (body["minReplicaCount"], body["cooldownPeriod"]) == (0, 120)
    prometheus, held = body["triggers"]
    assert prometheus["type"] == "prometheus"
    assert held == {
        "type": "redis",
        "metadata": {
            "address": "cache.abc123.use1.cache.amazonaws.com:6379",
            "listName": f"held:{asleep.name}",  # the list the proxy pushes one entry per held request to
            "listLength": "4",
            "activationListLength": "0",  # one held request wakes it from zero
        },
    }
    assert activity.held_key(asleep.name) == held["metadata"]["listName"]
    # A deployment that never sleeps needs no such trigger.
    (only,) = serving.render_scaled_object(serving_spec(min_replicas=1), with_redis)["spec"]["triggers"]
    assert only["type"] == "prometheus"


@pytest.mark.parametrize(("min_replicas", "max_replicas"), [(-1, 2), (3, 2), (0, 0)])
def test_an_impossible_replica_range_is_refused(min_replicas: int, max_replicas: int) -> None:
    with pytest.raises(ValueError, match="replica range"):
        serving.render_scaled_object(serving_spec(min_replicas=min_replicas, max_replicas=max_replicas), settings())


def test_cpu_only_deployment_asks_for_no_gpu() -> None:
    manifest = serving.render_deployment(serving_spec(gpu_count=0, engine="transformers"), settings())
    validate(manifest)
    pod = manifest["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in json.dumps(pod["containers"][0]["resources"]) and "tolerations" not in pod
    assert pod["containers"][0]["args"][:2] == ["--engine", "transformers"]
