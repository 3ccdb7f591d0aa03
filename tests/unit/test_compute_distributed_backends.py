"""Distributed jobs on the GPU backends: the RayJob's worker group (N pods with G GPUs, a head without GPUs) against
the upstream CRD schema, the ray backend's submission, and the SageMaker multi-instance CreateTrainingJob against
botocore's own API model (Stubber), with the trainer reading back the same spec."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from functions.compute.base import run_name
from functions.compute.k8s import rayjob
from functions.compute.ray import RayBackend
from functions.compute.sagemaker import SageMakerTrainingBackend
from functions.core.settings import Settings
from tests.unit.test_compute_eks_manifests import JOB_ID, settings, training_spec, validate
from tests.unit.test_compute_sagemaker_training import NOT_FOUND, stubbed
from tests.unit.test_compute_sagemaker_training import settings as sm_settings
from tests.unit.test_compute_sagemaker_training import spec as sm_spec

TWO_BY_FOUR = {"workers": 2, "gpus_per_worker": 4, "cpus_per_worker": 6}


def test_distributed_rayjob_has_a_worker_group_of_n_gpu_pods_and_a_head_without_gpus() -> None:
    spec = type(training_spec()).model_validate({**training_spec().to_json(), "compute": TWO_BY_FOUR})
    manifest = rayjob.render(run_name(JOB_ID), spec, settings(eks_training_gpus=1))
    validate(manifest)  # the RayJob CRD's schema, unknown fields refused
    cluster = manifest["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # the driver only: no training worker lands on the head
    assert "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert "entrypointNumGpus" not in manifest["spec"] and "tolerations" not in head["template"]["spec"]
    [group] = cluster["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 2
    pod = group["template"]["spec"]
    worker = pod["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "4" and worker["resources"]["requests"]["cpu"] == "24"
    assert worker["image"] == head["template"]["spec"]["containers"][0]["image"] and "ports" not in worker
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    argv = shlex.split(manifest["spec"]["entrypoint"])  # the same trainer CLI: it becomes the Ray Train driver
    assert json.loads(argv[2])["compute"] == {**TWO_BY_FOUR, "strategy": "ddp"}


def test_a_one_process_rayjob_stays_one_gpu_head_without_workers() -> None:
    spec = training_spec().model_copy(update={"compute": None})
    manifest = rayjob.render(run_name(JOB_ID), spec, settings(eks_training_gpus=1))
    validate(manifest)
    assert "workerGroupSpecs" not in manifest["spec"]["rayClusterSpec"] and manifest["spec"]["entrypointNumGpus"] == 1


def test_ray_submission_keeps_gpus_off_the_driver_of_a_distributed_job() -> None:
    backend = RayBackend(Settings(ray_head_address="http://127.0.0.1:1", ray_entrypoint_num_gpus=1))
    spec = training_spec()
    one = backend._submission("r", spec.model_copy(update={"compute": None}))
    assert one["entrypoint_num_gpus"] == 1
    two = backend._submission("r", type(spec).model_validate({**spec.to_json(), "compute": TWO_BY_FOUR}))
    assert "entrypoint_num_gpus" not in two  # the TorchTrainer asks Ray for a GPU per worker
    assert json.loads(shlex.split(two["entrypoint"])[2])["compute"]["workers"] == 2


def test_sagemaker_multi_instance_job_is_a_request_botocore_accepts(tmp_path: Path) -> None:
    spec = sm_spec(compute=TWO_BY_FOUR)
    backend = SageMakerTrainingBackend(sm_settings())
    request = backend.training_job_request(run_name(spec.job_id), spec)
    assert request["ResourceConfig"]["InstanceCount"] == 2
    client, stub = stubbed("sagemaker")
    stub.add_client_error("describe_training_job", **NOT_FOUND)
    stub.add_response(
        "create_training_job", {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/x"}, request
    )
    with stub:
        SageMakerTrainingBackend(sm_settings(), clients={"sagemaker": client}).submit(run_name(spec.job_id), spec)
        stub.assert_no_pending_responses()
    # Each instance's trainer reads the same spec back from the hyperparameters, compute included
    from ministudio_train.spec import load_spec

    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
    args = argparse.Namespace(spec=None, spec_json=None)
    parsed = load_spec(args, environ={"MINISTUDIO_SAGEMAKER_ROOT": str(tmp_path)})
    assert parsed.effective_compute.processes == 8 and parsed.compute == spec.compute
