"""One training spec for both sides (ministudio_common.spec): the spec the control plane builds for a job reaches
the trainer unchanged whichever way a backend passes it (`--spec-json`, a spec file, `$MINISTUDIO_JOB_SPEC`), the
defaults and validation are the same on both sides, and the module stays light enough for the Lambda bundle."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from ministudio_common import spec as shared
from pydantic import ValidationError

from functions.compute import base
from functions.core.models import Job
from functions.core.settings import Settings
from functions.jobs import launch
from tests.helpers.dispatch import DATASET_ID, store_with_dataset

NO_SAGEMAKER = {"MINISTUDIO_SAGEMAKER_ROOT": "/nonexistent"}


def control_plane_spec(**job: object) -> base.TrainingSpec:
    """What the dispatch worker hands a backend for a job (functions.jobs.launch.spec_for)."""
    store = store_with_dataset()
    values: dict[str, object] = {
        "id": "ftjob-roundtrip",
        "client_code": "acme",
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "training_file": DATASET_ID,
        "resolved_hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5},
        "suffix": "my-model",
        "seed": 1234,
        **job,
    }
    return launch.spec_for(store, Settings(_env_file=None), Job.model_validate(values))


def trainer_reads(how: str, sent: dict[str, object], tmp_path: Path) -> shared.TrainingSpec:
    from ministudio_train.spec import load_spec

    text = json.dumps(sent, separators=(",", ":"))
    args = argparse.Namespace(spec=None, spec_json=None)
    environ = dict(NO_SAGEMAKER)
    if how == "spec-json":  # ray, RayJob, and the local backend's argv
        args.spec_json = text
    elif how == "spec-file":  # the local backend's spec.json
        (tmp_path / "spec.json").write_text(text)
        args.spec = str(tmp_path / "spec.json")
    else:
        environ["MINISTUDIO_JOB_SPEC"] = text
    return load_spec(args, environ)


@pytest.mark.parametrize("how", ["spec-json", "spec-file", "env"])
def test_the_control_planes_spec_round_trips_through_the_trainers_loader_unchanged(how: str, tmp_path: Path) -> None:
    # Given the spec the control plane builds for a job, serialised as the backends send it
    sent = control_plane_spec()
    # When the trainer loads it
    loaded = trainer_reads(how, sent.to_json(), tmp_path)
    # Then every shared field is the one sent, and it serialises back to the same JSON
    assert isinstance(loaded, shared.TrainingSpec)
    assert shared.TrainingSpec.model_validate(loaded.model_dump(include=set(shared.FIELDS))) == sent
    assert loaded.model_dump(include=set(shared.FIELDS), mode="json") == sent.to_json()
    assert (loaded.seed, loaded.fine_tuned_model) == (
        1234,
        "ft:HuggingFaceTB/SmolLM2-135M-Instruct:acme:my-model:ftjob-roundtrip",
    )


def test_a_validation_file_and_no_suffix_round_trip_too(tmp_path: Path) -> None:
    sent = control_plane_spec(validation_file=DATASET_ID, suffix=None)
    loaded = trainer_reads("spec-json", sent.to_json(), tmp_path)
    assert loaded.validation_file == sent.validation_file is not None and loaded.suffix is None
    assert loaded.model_dump(include=set(shared.FIELDS), mode="json") == sent.to_json()


def test_both_sides_use_one_model_with_one_seed_default(tmp_path: Path) -> None:
    from ministudio_train.spec import JobSpec

    assert base.TrainingSpec is shared.TrainingSpec and issubclass(JobSpec, shared.TrainingSpec)
    minimal: dict[str, object] = {"job_id": "ftjob-x", "model": "m", "training_file": "t.jsonl", "output": "/tmp/o"}
    assert shared.TrainingSpec.model_validate(minimal).seed == shared.DEFAULT_SEED == 42
    assert trainer_reads("spec-json", minimal, tmp_path).seed == 42


def test_the_trainer_refuses_what_the_model_refuses(tmp_path: Path) -> None:
    from ministudio_train.errors import TrainError

    good = control_plane_spec().to_json()
    for bad, param in (
        (dict(good, seed=-1), "seed"),
        (dict(good, seed=2**31), "seed"),
        (dict(good, epochs=3), "epochs"),
    ):
        with pytest.raises(ValidationError):
            shared.TrainingSpec.model_validate(bad)
        with pytest.raises(TrainError) as refused:
            trainer_reads("spec-json", bad, tmp_path)
        assert (refused.value.code, refused.value.param) == ("invalid_job_spec", param)


def test_the_spec_module_imports_neither_torch_nor_transformers() -> None:
    # The Lambda bundle vendors it (infra/cdk/bundle.py): it may need pydantic, never the ML stack.
    code = (
        "import sys; import ministudio_common.spec, functions.compute.base;"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'boto3') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
