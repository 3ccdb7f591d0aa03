"""Where the job spec comes from (file, JSON string, env, SageMaker's /opt/ml) and how hyperparameters are checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ministudio_train import hyper
from ministudio_train.cli import build_parser
from ministudio_train.errors import TrainError
from ministudio_train.spec import JobSpec, SpecUnusable, load_spec

SPEC = {
    "job_id": "ftjob-abc",
    "tenant": "acme",
    "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "training_file": "s3://bucket/datasets/acme/file-x/train.jsonl",
    "validation_file": None,
    "hyperparameters": {"n_epochs": 2, "batch_size": 4, "prompt_loss_weight": 0.0},
    "seed": 7,
    "suffix": "my-model",
    "output": "s3://bucket/artifacts/acme/ftjob-abc/",
}
NO_SAGEMAKER = {"MINISTUDIO_SAGEMAKER_ROOT": "/nonexistent"}


def _load(argv: list[str], env: dict[str, str] | None = None) -> JobSpec:
    return load_spec(build_parser().parse_args(argv), {**NO_SAGEMAKER, **(env or {})})


def test_spec_file_json_string_and_env_give_the_same_spec(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(SPEC))

    specs = [
        _load(["--spec", str(path)]),
        _load(["--spec-json", json.dumps(SPEC)]),
        _load([], {"MINISTUDIO_JOB_SPEC": json.dumps(SPEC)}),
    ]

    assert specs[0] == specs[1] == specs[2]
    spec = specs[0]
    assert (spec.job_id, spec.tenant, spec.seed, spec.output) == ("ftjob-abc", "acme", 7, SPEC["output"])
    assert spec.hyperparameters == SPEC["hyperparameters"]
    assert spec.fine_tuned_model == "ft:HuggingFaceTB/SmolLM2-135M-Instruct:acme:my-model:ftjob-abc"


def test_cli_flags_override_the_spec() -> None:
    spec = _load(
        ["--spec-json", json.dumps(SPEC), "--model", "/models/x", "--output", "/tmp/out", "--n-epochs", "5",
         "--training-file", "/data/t.jsonl", "--batch-size", "auto", "--seed", "3"]
    )  # fmt: skip

    assert (spec.model, spec.output, spec.training_file, spec.seed) == ("/models/x", "/tmp/out", "/data/t.jsonl", 3)
    assert spec.hyperparameters == {"n_epochs": "5", "batch_size": "auto", "prompt_loss_weight": 0.0}


def test_openai_method_block_supplies_hyperparameters() -> None:
    raw = {**SPEC, "hyperparameters": None, "method": {"type": "supervised", "supervised": {
        "hyperparameters": {"n_epochs": 3, "batch_size": "auto"}}}}  # fmt: skip
    assert _load(["--spec-json", json.dumps(raw)]).hyperparameters == {"n_epochs": 3, "batch_size": "auto"}


def test_sagemaker_hyperparameters_are_strings_and_channels_are_local_dirs(tmp_path: Path) -> None:
    root = tmp_path / "opt" / "ml"
    config = root / "input" / "config"
    config.mkdir(parents=True)
    flat = {"job_id": "ftjob-sm", "tenant": "acme", "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "n_epochs": "2", "learning_rate_multiplier": "0.5", "prompt_loss_weight": "0", "seed": "11",
            "training_file": "s3://bucket/ignored.jsonl", "sagemaker_program": "train.py"}  # fmt: skip
    (config / "hyperparameters.json").write_text(json.dumps(flat))
    training = root / "input" / "data" / "training"
    training.mkdir(parents=True)
    (training / "train.jsonl").write_text("{}\n")

    spec = load_spec(build_parser().parse_args(["train"]), {"MINISTUDIO_SAGEMAKER_ROOT": str(root)})

    assert spec.training_file == str(training)  # SageMaker already downloaded the channel
    assert spec.output == spec.model_dir == str(root / "model")
    assert spec.checkpoint_dir == str(root / "checkpoints") and spec.failure_file == str(root / "output" / "failure")
    assert (spec.job_id, spec.seed) == ("ftjob-sm", 11)
    assert spec.hyperparameters == {"n_epochs": 2, "learning_rate_multiplier": 0.5, "prompt_loss_weight": 0}
    resolved = hyper.resolve(spec.hyperparameters, n_train=100)
    assert (resolved.n_epochs, resolved.learning_rate, resolved.prompt_loss_weight) == (2, 1e-4, 0.0)


def test_sagemaker_env_channels_and_model_dir(tmp_path: Path) -> None:
    channel, valid = tmp_path / "train", tmp_path / "valid"
    for d in (channel, valid):
        d.mkdir()
        (d / "data.jsonl").write_text("{}\n")
    env = {"SM_CHANNEL_TRAINING": str(channel), "SM_CHANNEL_VALIDATION": str(valid), "SM_MODEL_DIR": str(tmp_path)}

    spec = _load(["--model", "m", "--output", "s3://b/artifacts/acme/j/"], env)

    assert (spec.training_file, spec.validation_file) == (str(channel), str(valid))
    assert spec.output == "s3://b/artifacts/acme/j/" and spec.model_dir == str(tmp_path)


def test_spec_without_output_or_with_bad_json_is_unusable() -> None:
    with pytest.raises(SpecUnusable, match="no output"):
        _load(["--model", "m", "--training-file", "t.jsonl"])
    with pytest.raises(SpecUnusable, match="not valid JSON"):
        _load(["--spec-json", "{nope"])


def test_spec_missing_model_or_with_unknown_field_names_it() -> None:
    with pytest.raises(TrainError) as missing:
        _load(["--training-file", "t.jsonl", "--output", "/tmp/o"])
    with pytest.raises(TrainError) as unknown:
        _load(["--spec-json", json.dumps({**SPEC, "epochs": 3})])
    assert (missing.value.code, missing.value.param) == ("invalid_job_spec", "model")
    assert (unknown.value.code, unknown.value.param) == ("invalid_job_spec", "epochs")


def test_a_minimal_spec_takes_the_shared_models_defaults() -> None:
    from ministudio_common.spec import DEFAULT_SEED, TrainingSpec

    spec = _load(["--model", "m", "--training-file", "t.jsonl", "--output", "/tmp/o"])

    assert isinstance(spec, TrainingSpec) and spec.seed == DEFAULT_SEED == 42
    assert (spec.job_id, spec.tenant, spec.suffix, spec.validation_file) == ("ftjob-local", "", None, None)
    assert spec.fine_tuned_model is None  # no tenant: a run by hand names no fine-tuned model


@pytest.mark.parametrize(
    ("change", "param"),
    [({"seed": "seven"}, "seed"), ({"seed": -1}, "seed"), ({"model_dir": "/opt/ml/model"}, "model_dir")],
)
def test_a_spec_the_shared_model_refuses_is_an_invalid_job_spec(change: dict[str, object], param: str) -> None:
    # model_dir is SageMaker's to say (from /opt/ml), never a spec field
    with pytest.raises(TrainError) as refused:
        _load(["--spec-json", json.dumps({**SPEC, **change})])
    assert (refused.value.code, refused.value.param) == ("invalid_job_spec", param)


def test_null_fields_are_unset() -> None:
    spec = _load(["--spec-json", json.dumps({**SPEC, "seed": None, "suffix": None, "tenant": None})])
    assert (spec.seed, spec.suffix, spec.tenant) == (42, None, "")


def test_auto_hyperparameters_resolve_from_the_dataset_size() -> None:
    small, large = hyper.resolve({}, n_train=20), hyper.resolve({"batch_size": "auto"}, n_train=50_000)

    assert (small.n_epochs, small.batch_size, small.learning_rate) == (3, 4, 2e-4)
    assert (large.n_epochs, large.batch_size) == (2, 32)
    assert hyper.resolve({}, n_train=2).batch_size == 2  # never more than the examples there are


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"n_epochs": "two"}, "n_epochs"),
        ({"n_epochs": 1.5}, "n_epochs"),
        ({"learning_rate_multiplier": -1}, "learning_rate_multiplier"),
        ({"prompt_loss_weight": 2}, "prompt_loss_weight"),
        ({"lora_r": True}, "lora_r"),
        ({"max_seq_len": 100_000}, "max_seq_len"),
        ({"lr_scheduler": "exotic"}, "lr_scheduler"),
        ({"warmup_steps": 10}, "warmup_steps"),
    ],
)
def test_bad_hyperparameters_are_rejected_naming_the_parameter(raw: dict[str, object], param: str) -> None:
    with pytest.raises(TrainError) as info:
        hyper.resolve(raw, n_train=100, context_length=8192)
    assert (info.value.code, info.value.param) == ("invalid_hyperparameters", param)
    assert param in info.value.message


def test_batch_size_larger_than_the_dataset_is_impossible() -> None:
    with pytest.raises(TrainError) as info:
        hyper.resolve({"batch_size": "8"}, n_train=5)
    assert info.value.param == "batch_size" and "5 training examples" in info.value.message
