"""A run whose pods were evicted is retried by the backend (KubeRay's backoffLimit) and resumes; one whose trainer
failed on its own is not trained again: the retry ends at once with the earlier reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ministudio_train.cli import refuse_after_own_failure
from ministudio_train.errors import TrainError
from ministudio_train.outputs import Outputs

from functions.compute.base import run_name
from functions.compute.k8s import rayjob
from tests.unit.test_compute_eks_manifests import JOB_ID, settings, training_spec, validate


def test_the_rayjob_retries_a_run_on_a_new_cluster() -> None:
    manifest = rayjob.render(run_name(JOB_ID), training_spec(), settings(eks_rayjob_retries=3))
    validate(manifest)
    assert manifest["spec"]["backoffLimit"] == 3


def _second_attempt(root: Path, earlier: dict[str, object] | None) -> Outputs:
    first = Outputs(str(root), root / "staging")
    first.begin_attempt()
    if earlier is not None:
        (root / "result.json").write_text(json.dumps({**earlier, "attempt": 1}))
    second = Outputs(str(root), root / "staging")
    assert second.begin_attempt() == 2
    return second


@pytest.mark.parametrize("earlier", [None, {"status": "cancelled"}])
def test_an_attempt_after_an_eviction_or_a_shutdown_trains(tmp_path: Path, earlier: dict[str, object] | None) -> None:
    refuse_after_own_failure(_second_attempt(tmp_path, earlier).earlier_result)  # nothing raised: it resumes


def test_an_attempt_after_the_trainers_own_failure_ends_with_that_reason(tmp_path: Path) -> None:
    failed = {"status": "failed", "error": {"code": "invalid_training_file", "message": "line 3: no messages"}}
    with pytest.raises(TrainError) as refused:
        refuse_after_own_failure(_second_attempt(tmp_path, failed).earlier_result)
    assert refused.value.code == "invalid_training_file" and "line 3: no messages" in refused.value.message
