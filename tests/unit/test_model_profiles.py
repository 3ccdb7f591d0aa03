"""Deployments have a profile (issue 17): `llm` for base models, the embedding model and seed 003's task models;
`tabular` for seed 004's classical models. Each backend starts the right server for it (the local command line
parsed by ministudio-serve itself, a validated EKS manifest on a CPU node, a SageMaker CPU instance type), and the
names a tenant reads never show another tenant's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from functions.compute import local_serving_procs, sagemaker_requests
from functions.compute.k8s import serving as k8s_serving
from functions.compute.serving import ServingSpec, serving_name
from functions.core.errors import InvalidRequest, NotFound
from functions.core.model_kinds import EMBEDDING_MODEL, TABULAR_MODEL
from functions.core.models import Tenant
from functions.core.settings import Settings
from functions.deployments import lifecycle, proxy_seed, service
from functions.deployments.public import own_name, shown_name
from functions.store.cache import Cache
from functions.store.mongo import Store
from tests.helpers.deployment_store import fine_tuned_id, two_tenants
from tests.unit.test_compute_eks_manifests import settings as eks_settings
from tests.unit.test_compute_eks_manifests import validate

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


class Sent:
    def send_deployment(self, deployment_id: str, action: str) -> None:
        pass


@pytest.fixture
def store() -> Store:
    return two_tenants()


def _deploy(store: Store, tenant: str, model: str) -> Any:
    return service.deploy_base(store, Cache(None), Sent(), Settings(), Tenant(id=tenant), model, service.Sizing())  # type: ignore[arg-type]


def _deploy_fine_tuned(store: Store, tenant: str) -> Any:
    sizing = service.Sizing()
    return service.deploy_fine_tuned(
        store, Cache(None), Sent(), Settings(), Tenant(id=tenant), fine_tuned_id(tenant), sizing
    )  # type: ignore[arg-type]


def spec(profile: str = "llm", **fields: Any) -> ServingSpec:
    name = serving_name("base", "acme", TABULAR_MODEL if profile == "tabular" else BASE, "dep-1")
    return ServingSpec("dep-1", name, "acme", BASE, profile=profile, **fields)  # type: ignore[arg-type]


def test_the_embedding_model_and_tabular_deploy_with_their_profiles(store: Store) -> None:
    embedding = _deploy(store, "acme", "all-MiniLM-L6-v2")  # the short name, as OpenAI-style names go
    assert (embedding.model, embedding.base_model, embedding.profile) == (EMBEDDING_MODEL, BASE, "llm")
    tabular = _deploy(store, "acme", TABULAR_MODEL)
    assert (tabular.profile, lifecycle.spec_for(tabular, Settings()).profile) == ("tabular", "tabular")
    assert lifecycle.spec_for(embedding, Settings()).model == BASE  # an llm server of the first base model
    with pytest.raises(InvalidRequest, match="tabular") as refused:
        _deploy(store, "acme", "gpt-4o")
    assert refused.value.param == "model"


def test_the_local_backend_starts_the_tabular_profile_on_the_artifacts_bucket(tmp_path: Path) -> None:
    from ministudio_serve.cli import parse

    argv = local_serving_procs.server_argv(["ministudio-serve"], spec("tabular"), 8123, tmp_path, 2, "s3://b/x/")
    served = parse(argv[1:])  # the server's own parser: every flag is one it knows
    assert (served.profile, served.port, served.request_log) == ("tabular", 8123, tmp_path / "requests.sqlite")
    env = local_serving_procs.server_env(Settings(artifacts_bucket_name="arts", inference_api_key="k"))
    assert env["ARTIFACTS_BUCKET_NAME"] == "arts" and env["API_KEY"] == "k"
    llm = parse(local_serving_procs.server_argv(["ministudio-serve"], spec(), 8124, tmp_path, 2, "s3://b/x/")[1:])
    assert (llm.profile, llm.model) == ("llm", BASE)


def test_eks_runs_a_tabular_deployment_on_a_cpu_node_without_a_gpu() -> None:
    selector = {"node.kubernetes.io/instance-type": "m6i.large"}
    manifest = k8s_serving.render_deployment(spec("tabular", gpu_count=1), eks_settings(eks_cpu_node_selector=selector))
    validate(manifest)
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][:2] == ["--profile", "tabular"] and "--model" not in container["args"]
    assert "nvidia.com/gpu" not in str(container["resources"]) and "tolerations" not in pod
    assert pod["nodeSelector"] == selector and container["resources"]["requests"]["cpu"] == "1"
    llm = k8s_serving.render_deployment(spec(), eks_settings())["spec"]["template"]["spec"]
    assert "nodeSelector" not in llm and llm["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_sagemaker_runs_a_tabular_deployment_on_a_cpu_instance_type() -> None:
    settings = Settings(sagemaker_execution_role_arn="arn:aws:iam::1:role/r", artifacts_bucket_name="arts")
    tabular, llm = spec("tabular"), spec()
    tags = sagemaker_requests.spec_tags(tabular)
    assert tags["ministudio:profile"] == "tabular" and tags["ministudio:gpu-count"] == "0"
    config = sagemaker_requests.endpoint_config(settings, tabular.name, 2, [], "tabular")
    assert config["ProductionVariants"][0]["InstanceType"] == settings.sagemaker_cpu_inference_instance_type
    assert sagemaker_requests.endpoint_config(settings, llm.name, 2, [])["ProductionVariants"][0]["InstanceType"] == (
        settings.sagemaker_inference_instance_type
    )
    component = sagemaker_requests.base_component_request(settings, tabular.name, tags)
    assert "NumberOfAcceleratorDevicesRequired" not in component["Specification"]["ComputeResourceRequirements"]
    env = sagemaker_requests.container_env(settings, tabular)
    assert env["SERVE_PROFILE"] == "tabular" and env["ARTIFACTS_BUCKET_NAME"] == "arts" and "MODEL_REF" not in env


def test_a_fine_tuned_deploy_on_another_tenants_server_never_shows_that_tenants_code(store: Store) -> None:
    # globex's own fine-tuned server (`vllm-ft-globex-...`), ready: acme's adapter of the same base rides on it.
    host = _deploy_fine_tuned(store, "globex")
    store.deployments.transition(host.id, ["pending"], "ready")
    assert "globex" in host.name and host.dedicated
    rider = _deploy_fine_tuned(store, "acme")
    assert rider.host_id == host.id and rider.name == host.name  # the backend's name: the server it rides on
    for shown in (own_name(rider), shown_name(rider)):
        assert "globex" not in shown and shown.startswith("vllm-ft-acme-smollm2-135m-instruct-")
    assert own_name(rider) != own_name(host)
    assert shown_name(host) == host.name


def test_seed_routes_follow_the_profiles_allow_list() -> None:
    assert proxy_seed.allowed("llm", "POST", "infer/batch") and proxy_seed.allowed("llm", "GET", "info")
    assert proxy_seed.allowed("tabular", "POST", "predict/xgboost/v2")
    assert proxy_seed.allowed("tabular", "POST", "models/logistic_regression/versions")
    assert not proxy_seed.allowed("llm", "POST", "v1/load_lora_adapter")
    assert not proxy_seed.allowed("llm", "GET", "logs") and not proxy_seed.allowed("tabular", "POST", "infer")
    assert not proxy_seed.allowed("tabular", "POST", "predict/../../admin")
    with pytest.raises(NotFound):
        proxy_seed.check_models("acme", b'{"prompt": "x", "model": "\\u0066t:b:globex:s:ftjob-1"}')
    proxy_seed.check_models("acme", b'{"prompt": "x", "model": "ft:b:acme:s:ftjob-1"}')
    hidden = proxy_seed.hide_other_adapters(b'{"adapters": ["ft:b:acme:s:j", "ft:b:globex:s:j"]}', "acme")
    assert b"globex" not in hidden and b"ft:b:acme:s:j" in hidden
