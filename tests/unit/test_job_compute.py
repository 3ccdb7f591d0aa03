"""The `compute` of a fine-tuning job: the base model's catalogue default, what the request adds, and the check
against the backend's own cluster-status figures (more than exists is a 400 naming the limit)."""

from __future__ import annotations

from typing import Any

import pytest
from ministudio_common import catalogue
from ministudio_common.spec import Compute

from functions.core.errors import InvalidRequest
from functions.jobs import compute

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"
# What the eks backend's cluster_status says of a cluster with one 8-GPU node (functions/compute/k8s/capacity.py).
EIGHT_GPUS = {"backend": "eks", "cpu": {"total": 96.0}, "gpu": {"total": 8, "nodes": [{"name": "gpu-1", "total": 8}]}}


def test_defaults_come_from_the_models_catalogue_entry() -> None:
    assert compute.resolve(SMOL, None) == Compute()  # one CPU process: the offline model
    for name in ("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3"):
        entry = catalogue.lookup(name)
        assert entry is not None and entry.memory_gb > 16 and entry.compute.gpus_per_worker == 1
        assert compute.resolve(name, None) == entry.compute
        assert compute.resolve(name, {"workers": 2}) == entry.compute.model_copy(update={"workers": 2})
    assert compute.resolve("a/model-not-listed", None) == Compute()


def test_a_model_no_gpu_holds_defaults_to_fsdp_on_a_node_and_refuses_whole_copies() -> None:
    big = "meta-llama/Llama-3.1-70B-Instruct"
    entry = catalogue.lookup(big)
    assert entry is not None and entry.memory_gb > 141  # more than an H200's memory
    assert compute.resolve(big, None) == Compute(workers=1, gpus_per_worker=8, cpus_per_worker=8, strategy="fsdp")
    assert compute.resolve(big, {"workers": 2}).gpus == 16  # two nodes, still sharded
    for asked in ({"strategy": "ddp"}, {"gpus_per_worker": 1}):  # a whole copy per GPU, or one GPU alone
        with pytest.raises(InvalidRequest, match=r'needs about 170 GB .* \("strategy": "fsdp"\)') as caught:
            compute.resolve(big, asked)
        assert caught.value.param == "compute.strategy"
    assert compute.resolve(SMOL, {"workers": 2, "strategy": "fsdp"}).strategy == "fsdp"  # any model may shard


@pytest.mark.parametrize(
    ("asked", "param"),
    [
        ({"workers": 0}, "compute.workers"),
        ({"gpus_per_worker": "many"}, "compute.gpus_per_worker"),
        ({"nodes": 2}, "compute.nodes"),
        ({"workers": 65}, "compute.workers"),
        ({"strategy": "zero3"}, "compute.strategy"),
    ],
)
def test_a_bad_field_is_a_400_naming_it(asked: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        compute.resolve(SMOL, asked)
    assert caught.value.param == param


def test_nine_gpus_on_an_eight_gpu_cluster_is_refused_naming_the_limit() -> None:
    compute.check(Compute(workers=1, gpus_per_worker=8), EIGHT_GPUS)  # all of it: fine
    with pytest.raises(InvalidRequest, match=r"asks for 9 GPUs .* has 8 in all \(cluster-status gpu.total\)"):
        compute.check(Compute(workers=9, gpus_per_worker=1), EIGHT_GPUS)
    two_nodes = {**EIGHT_GPUS, "gpu": {"total": 8, "nodes": [{"total": 4}, {"total": 4}]}}
    compute.check(Compute(workers=2, gpus_per_worker=4), two_nodes)
    with pytest.raises(InvalidRequest, match="largest node has 4") as caught:
        compute.check(Compute(workers=1, gpus_per_worker=8), two_nodes)  # 8 fit the cluster, not one pod
    assert caught.value.param == "compute.gpus_per_worker"


def test_cpus_and_sagemaker_instance_quota_are_limits_too() -> None:
    with pytest.raises(InvalidRequest, match=r"asks for 4 CPUs .* has 2 in all"):
        compute.check(Compute(workers=2, cpus_per_worker=2), {"backend": "local", "cpu": {"total": 2}})
    quota = {"backend": "sagemaker", "quota": {"name": "ml.g5.2xlarge for training job usage", "value": 2.0}}
    compute.check(Compute(workers=2, gpus_per_worker=1), quota)
    with pytest.raises(InvalidRequest, match=r"quota 'ml\.g5\.2xlarge for training job usage' is 2"):
        compute.check(Compute(workers=3, gpus_per_worker=1), quota)


def test_unknown_figures_refuse_nothing() -> None:
    # A Ray head that cannot be reached, SageMaker without quota access: the backend has the last word.
    unknown = {"backend": "ray", "available": False, "cpu": {"total": None}, "gpu": {"total": None}}
    compute.check(Compute(workers=64, gpus_per_worker=8), unknown)
    compute.check(Compute(workers=64, gpus_per_worker=8), {"backend": "sagemaker", "quota": {"value": None}})


def test_only_more_than_one_cpu_process_asks_the_backend() -> None:
    class Backend:
        calls = 0

        def cluster_status(self) -> dict[str, Any]:
            self.calls += 1
            return EIGHT_GPUS

    backend = Backend()
    compute.check_capacity(backend, Compute())  # type: ignore[arg-type]
    assert backend.calls == 0
    compute.check_capacity(backend, Compute(workers=2))  # type: ignore[arg-type]
    assert backend.calls == 1
