"""Job create's `compute` extension through the API (the OpenAI SDK sends it as `extra_body`): shown on the job,
carried into the trainer's spec, and checked against the backend's cluster-status figures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.compute.base import RunState, RunStatus, TrainingSpec
from functions.core.settings import get_settings
from functions.jobs import launch
from functions.store.mongo import get_store
from tests.helpers.jobs import create, validated_file

Headers = dict[str, str]


class EightGpuCluster:
    """A backend whose cluster-status is an EKS cluster of one 8-GPU node; it runs nothing."""

    name = "eks"

    def cluster_status(self) -> dict[str, Any]:
        return {"backend": "eks", "cpu": {"total": 96.0}, "gpu": {"total": 8, "nodes": [{"total": 8}]}}

    def submit(self, run_name: str, spec: TrainingSpec) -> RunStatus:
        return RunStatus(run_name, RunState.pending)


@pytest.fixture
def eight_gpus(monkeypatch: pytest.MonkeyPatch) -> EightGpuCluster:
    backend = EightGpuCluster()
    monkeypatch.setattr("functions.compute.get_training_backend", lambda settings=None: backend)
    return backend


def test_asking_for_nine_gpus_on_an_eight_gpu_cluster_is_a_400_naming_the_limit(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int], eight_gpus: EightGpuCluster
) -> None:
    acme = make_tenant("acme")
    file_id = validated_file(client, acme, ingest)
    refused = create(client, acme, training_file=file_id, compute={"workers": 9, "gpus_per_worker": 1})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == "compute" and "has 8 in all (cluster-status gpu.total)" in error["message"]
    bad = create(client, acme, training_file=file_id, compute={"workers": "two"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "compute.workers"
    assert client.get("/v1/fine_tuning/jobs", headers=acme).json()["data"] == []  # nothing was created


def test_the_asked_compute_is_shown_on_the_job_and_reaches_the_trainers_spec(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int], eight_gpus: EightGpuCluster
) -> None:
    acme = make_tenant("acme")
    made = create(client, acme, training_file=validated_file(client, acme, ingest),
                  compute={"workers": 2, "gpus_per_worker": 4})  # fmt: skip
    assert made.status_code == 200, made.text
    shown = client.get(f"/v1/fine_tuning/jobs/{made.json()['id']}", headers=acme).json()["compute"]
    assert shown == {"workers": 2, "gpus_per_worker": 4, "cpus_per_worker": 1, "strategy": "ddp"}
    job = get_store().jobs.get(made.json()["id"])
    assert job is not None
    spec = launch.spec_for(get_store(), get_settings(), job)
    assert spec.effective_compute.processes == 8 and spec.to_json()["compute"]["workers"] == 2


def test_the_local_backend_refuses_gpus_this_machine_does_not_have(
    client: TestClient, make_tenant: Callable[..., Headers], ingest: Callable[[], int]
) -> None:
    acme = make_tenant("acme")
    file_id = validated_file(client, acme, ingest)
    assert get_settings().compute_backend == "local"  # its cluster-status is this machine's CPUs and GPUs
    refused = create(client, acme, training_file=file_id, compute={"workers": 64, "gpus_per_worker": 8})
    assert refused.status_code == 400 and "cluster-status gpu.total" in refused.json()["error"]["message"]
    default = create(client, acme, training_file=file_id)  # SmolLM2's default: one CPU process, never refused
    assert default.status_code == 200 and default.json()["compute"]["workers"] == 1
