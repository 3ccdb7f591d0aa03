"""The sagemaker training backend: what CreateTrainingJob is sent, how SageMaker's states read, and that a job
submitted twice is one job. moto (in-process, `mock_aws`) serves the calls it implements (create/describe training
job, CloudWatch Logs); botocore's Stubber serves the rest (StopTrainingJob, ListTrainingJobs with in-progress jobs,
Service Quotas, ResourceInUse races, every status moto never reports). Stubber checks each request against the
service's own API model, so a malformed request fails here as it would in AWS."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from functions.compute import get_training_backend, reset_training_backends
from functions.compute.base import RunState, TrainingSpec, run_name
from functions.compute.sagemaker import TRAINING_LOG_GROUP, SageMakerTrainingBackend, hyperparameters
from functions.compute.sagemaker_client import SageMakerBackendError
from functions.core.ids import new_id
from functions.core.settings import Settings
from tests.helpers.sagemaker import ROLE, sagemaker_settings

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ministudio-trainer-dev:latest"
JOB = "ftjob-k7q2m4xwzp3rt6yz5abc2def"


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "artifacts_bucket_name": "ministudio-dev-artifacts",
        "trainer_image_uri": IMAGE,
        "job_max_runtime_seconds": 7200,
    }
    return sagemaker_settings(**{**values, **overrides})


def spec(job_id: str = JOB, tenant: str = "acme", **overrides: Any) -> TrainingSpec:
    values: dict[str, Any] = {
        "job_id": job_id,
        "tenant": tenant,
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "training_file": f"s3://ministudio-dev-datasets/datasets/{tenant}/file-abc/chats.jsonl",
        "output": f"s3://ministudio-dev-artifacts/artifacts/{tenant}/{job_id}/",
        "hyperparameters": {"n_epochs": 3, "learning_rate_multiplier": 1.0, "lora_r": 8, "batch_size": "auto"},
        "seed": 7,
        "suffix": "123",
        **overrides,
    }
    return TrainingSpec(**values)


@pytest.fixture
def moto_sagemaker() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sagemaker", region_name="us-east-1")


def stubbed(service: str) -> tuple[Any, Stubber]:
    client = botocore.session.get_session().create_client(
        service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return client, Stubber(client)


def describe(status: str, secondary: str, **extra: Any) -> dict[str, Any]:
    """A DescribeTrainingJob answer with every member the API marks required."""
    return {
        "TrainingJobName": JOB,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB}",
        "ModelArtifacts": {"S3ModelArtifacts": ""},
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 100},
        "StoppingCondition": {"MaxRuntimeInSeconds": 7200},
        "CreationTime": datetime(2026, 11, 27, tzinfo=UTC),
        **extra,
    }


NOT_FOUND = {"service_error_code": "ValidationException", "service_message": "Requested resource not found."}


# --- the request ---------------------------------------------------------------------------------------------
def test_submit_creates_one_training_job_named_from_the_job_id(moto_sagemaker: Any) -> None:
    backend = SageMakerTrainingBackend(settings())
    job_id = new_id("ftjob-")

    submitted = backend.submit(run_name(job_id), spec(job_id))

    job = moto_sagemaker.describe_training_job(TrainingJobName=job_id)
    assert submitted.state is RunState.pending and submitted.backend_id == job["TrainingJobArn"]
    assert job["TrainingJobName"] == job_id and len(job_id) <= 63  # what EventBridge reports and progress.py looks up
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["RoleArn"] == ROLE
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://ministudio-dev-artifacts/artifacts/acme/{job_id}/"
    (channel,) = job["InputDataConfig"]
    assert channel["ChannelName"] == "training"  # the trainer reads SM_CHANNEL_TRAINING / input/data/training
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == spec(job_id).training_file
    assert not job.get("EnableManagedSpotTraining")
    assert {t["Key"]: t["Value"] for t in moto_sagemaker.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]} == {
        "ministudio:job-id": job_id,
        "ministudio:tenant": "acme",
    }


def test_the_trainer_reads_back_exactly_the_spec_it_was_sent(tmp_path: Path) -> None:
    # Given the hyperparameters.json SageMaker writes from the request, and the channels it downloads
    from ministudio_train.spec import SAGEMAKER_ROOT_ENV, load_spec

    sent = spec(tenant="null", suffix="123", validation_file="s3://ministudio-dev-datasets/datasets/null/f/v.jsonl")
    sent = TrainingSpec(**{**sent.to_json(), "output": f"s3://ministudio-dev-artifacts/artifacts/null/{JOB}/"})
    request = SageMakerTrainingBackend(settings()).training_job_request(JOB, sent)
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
    for channel in request["InputDataConfig"]:
        folder = tmp_path / "input" / "data" / channel["ChannelName"]
        folder.mkdir(parents=True)
        (folder / "part.jsonl").write_text("{}\n")
    args = argparse.Namespace(spec=None, spec_json=None)

    # When the trainer loads its spec inside the job
    loaded = load_spec(args, {SAGEMAKER_ROOT_ENV: str(tmp_path)})

    # Then every field is the one sent, typed as sent, and the data come from the downloaded channels
    assert (loaded.job_id, loaded.tenant, loaded.model, loaded.seed) == (JOB, "null", sent.model, 7)
    assert loaded.suffix == "123" and loaded.output == sent.output
    assert loaded.hyperparameters == sent.hyperparameters
    assert loaded.training_file == str(tmp_path / "input" / "data" / "training")
    assert loaded.validation_file == str(tmp_path / "input" / "data" / "validation")
    assert loaded.checkpoint_dir == str(tmp_path / "checkpoints")


def test_spot_training_checkpoints_under_the_jobs_own_prefix(moto_sagemaker: Any) -> None:
    backend = SageMakerTrainingBackend(settings(sagemaker_use_spot=True))
    backend.submit(JOB, spec())

    job = moto_sagemaker.describe_training_job(TrainingJobName=JOB)
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 7200}
    assert job["CheckpointConfig"] == {
        "S3Uri": f"s3://ministudio-dev-artifacts/artifacts/acme/{JOB}/sagemaker-checkpoints/",
        "LocalPath": "/opt/ml/checkpoints",
    }


@pytest.mark.parametrize(
    "output",
    [
        f"s3://ministudio-dev-artifacts/artifacts/other/{JOB}/",  # another tenant's prefix
        "s3://ministudio-dev-artifacts/artifacts/acme/ftjob-someoneelse/",
        f"s3://ministudio-dev-artifacts/artifacts/acme/{JOB}/../../other/{JOB}/",
        f"/tmp/artifacts/acme/{JOB}/",
    ],
)
def test_an_output_outside_the_tenants_job_prefix_is_refused(output: str, moto_sagemaker: Any) -> None:
    with pytest.raises(ValueError, match="must be s3://"):
        SageMakerTrainingBackend(settings()).submit(JOB, spec(output=output))
    assert moto_sagemaker.list_training_jobs()["TrainingJobSummaries"] == []


@pytest.mark.parametrize(
    ("missing", "setting"),
    [("trainer_image_uri", "TRAINER_IMAGE_URI"), ("sagemaker_execution_role_arn", "SAGEMAKER_EXECUTION_ROLE_ARN")],
)
def test_a_missing_setting_is_named(missing: str, setting: str, moto_sagemaker: Any) -> None:
    with pytest.raises(SageMakerBackendError, match=setting):
        SageMakerTrainingBackend(settings(**{missing: None})).submit(JOB, spec())


def test_hyperparameters_stay_within_sagemakers_limits() -> None:
    with pytest.raises(ValueError, match="at most 2500"):
        hyperparameters(spec(hyperparameters={"notes": "x" * 2600}))
    with pytest.raises(ValueError, match="clashes"):
        hyperparameters(spec(hyperparameters={"output": "s3://elsewhere/"}))


# --- idempotency -----------------------------------------------------------------------------------------------
def test_a_redelivered_submit_finds_the_first_job(moto_sagemaker: Any) -> None:
    backend = SageMakerTrainingBackend(settings())
    first = backend.submit(JOB, spec())
    again = backend.submit(JOB, spec(hyperparameters={"n_epochs": 9}))

    assert again.backend_id == first.backend_id
    assert again.state is RunState.succeeded  # moto finishes jobs at once: the second call read, not re-created
    assert moto_sagemaker.describe_training_job(TrainingJobName=JOB)["HyperParameters"]["n_epochs"] == "3"
    assert len(moto_sagemaker.list_training_jobs()["TrainingJobSummaries"]) == 1


def test_a_concurrent_submit_that_lost_the_race_reads_the_winner() -> None:
    client, stub = stubbed("sagemaker")
    stub.add_client_error("describe_training_job", **NOT_FOUND)
    stub.add_client_error(
        "create_training_job",
        service_error_code="ResourceInUse",
        service_message="Training job names must be unique within an AWS account and region",
    )
    stub.add_response("describe_training_job", describe("InProgress", "Training"), {"TrainingJobName": JOB})
    with stub:
        status = SageMakerTrainingBackend(settings(), clients={"sagemaker": client}).submit(JOB, spec())
    stub.assert_no_pending_responses()
    assert status.state is RunState.running


def test_the_factory_builds_the_sagemaker_backend() -> None:
    try:
        assert isinstance(get_training_backend(settings()), SageMakerTrainingBackend)
    finally:
        reset_training_backends()


# --- states ------------------------------------------------------------------------------------------------------
STATES = [
    ("InProgress", "Starting", RunState.pending),
    ("InProgress", "Pending", RunState.pending),
    ("InProgress", "LaunchingMLInstances", RunState.pending),
    ("InProgress", "PreparingTrainingStack", RunState.pending),
    ("InProgress", "Downloading", RunState.pending),
    ("InProgress", "DownloadingTrainingImage", RunState.pending),
    ("InProgress", "Restarting", RunState.pending),
    ("InProgress", "Interrupted", RunState.pending),
    ("InProgress", "Training", RunState.running),
    ("InProgress", "Uploading", RunState.running),
    ("InProgress", "Updating", RunState.running),
    ("Stopping", "Stopping", RunState.running),
    ("Completed", "Completed", RunState.succeeded),
    ("Failed", "Failed", RunState.failed),
    ("Stopped", "Stopped", RunState.cancelled),
    ("Stopped", "MaxRuntimeExceeded", RunState.failed),
    ("Stopped", "MaxWaitTimeExceeded", RunState.failed),
    ("Deleting", "Completed", RunState.missing),
]


def test_every_status_sagemaker_defines_is_mapped() -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    output = model.operation_model("DescribeTrainingJob").output_shape.members
    assert {s for s, _, _ in STATES} == set(output["TrainingJobStatus"].enum)
    assert {s for _, s, _ in STATES} == set(output["SecondaryStatus"].enum)


@pytest.mark.parametrize(("status", "secondary", "expected"), STATES)
def test_status_maps_sagemakers_states(status: str, secondary: str, expected: RunState) -> None:
    client, stub = stubbed("sagemaker")
    stub.add_response("describe_training_job", describe(status, secondary), {"TrainingJobName": JOB})
    with stub:
        got = SageMakerTrainingBackend(settings(), clients={"sagemaker": client}).status(JOB)
    assert got.state is expected
    assert got.backend_id == f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB}"
    if secondary == "MaxRuntimeExceeded":
        assert "time limit" in (got.message or "")


def test_a_failed_job_says_why() -> None:
    client, stub = stubbed("sagemaker")
    reason = "AlgorithmError: invalid_training_file: line 3 is not JSON"
    stub.add_response("describe_training_job", describe("Failed", "Failed", FailureReason=reason))
    with stub:
        got = SageMakerTrainingBackend(settings(), clients={"sagemaker": client}).status(JOB)
    assert (got.state, got.message) == (RunState.failed, reason)


def test_an_unknown_job_is_missing(moto_sagemaker: Any) -> None:
    assert SageMakerTrainingBackend(settings()).status("ftjob-nosuchjob").state is RunState.missing


def test_other_errors_are_not_read_as_missing() -> None:
    client, stub = stubbed("sagemaker")
    stub.add_client_error("describe_training_job", service_error_code="AccessDeniedException", service_message="no")
    with stub, pytest.raises(SageMakerBackendError, match="DescribeTrainingJob"):
        SageMakerTrainingBackend(settings(), clients={"sagemaker": client}).status(JOB)


# --- cancel -------------------------------------------------------------------------------------------------------
def test_cancel_stops_a_running_job() -> None:
    client, stub = stubbed("sagemaker")
    stub.add_response("describe_training_job", describe("InProgress", "Training"))
    stub.add_response("stop_training_job", {}, {"TrainingJobName": JOB})
    stub.add_response("describe_training_job", describe("Stopping", "Stopping"))
    with stub:
        got = SageMakerTrainingBackend(settings(), clients={"sagemaker": client}).cancel(JOB)
    stub.assert_no_pending_responses()
    assert got.state is RunState.running  # stopping: the Stopped event (or result.json) settles the job


@pytest.mark.parametrize("status", ["Completed", "Failed", "Stopped"])
def test_cancelling_a_finished_job_changes_nothing(status: str) -> None:
    client, stub = stubbed("sagemaker")
    stub.add_response("describe_training_job", describe(status, status))  # and no StopTrainingJob: unstubbed
    with stub:
        got = SageMakerTrainingBackend(settings(), clients={"sagemaker": client}).cancel(JOB)
    assert got.state.terminal


def test_cancel_of_a_job_that_ended_meanwhile_reads_its_end() -> None:
    client, stub = stubbed("sagemaker")
    stub.add_response("describe_training_job", describe("InProgress", "Uploading"))
    stub.add_client_error(
        "stop_training_job", service_error_code="ValidationException", service_message="The job is not in progress"
    )
    stub.add_response("describe_training_job", describe("Completed", "Completed"))
    with stub:
        got = SageMakerTrainingBackend(settings(), clients={"sagemaker": client}).cancel(JOB)
    assert got.state is RunState.succeeded


def test_cancel_of_an_unknown_job_is_missing(moto_sagemaker: Any) -> None:
    assert SageMakerTrainingBackend(settings()).cancel("ftjob-nosuchjob").state is RunState.missing


# --- logs -----------------------------------------------------------------------------------------------------
def test_logs_are_the_last_lines_across_the_jobs_streams() -> None:
    with mock_aws():
        logs = boto3.client("logs", region_name="us-east-1")
        logs.create_log_group(logGroupName=TRAINING_LOG_GROUP)
        t0 = int(time.time() * 1000) - 60_000  # CloudWatch drops events older than 14 days, and so does moto
        streams = {
            f"{JOB}/algo-1-1795797000": [(1000, "loading model"), (3000, "step 1 loss=2.1")],
            f"{JOB}/algo-1-1795797600": [(2000, "restarted after spot interruption"), (4000, "step 2 loss=1.9")],
            f"{JOB}x/algo-1-1795797000": [(5000, "another job's line")],  # a name this one is a prefix of
        }
        for stream, events in streams.items():
            logs.create_log_stream(logGroupName=TRAINING_LOG_GROUP, logStreamName=stream)
            logs.put_log_events(
                logGroupName=TRAINING_LOG_GROUP,
                logStreamName=stream,
                logEvents=[{"timestamp": t0 + t, "message": m} for t, m in events],
            )
        backend = SageMakerTrainingBackend(settings())
        assert backend.logs(JOB, tail=3).splitlines() == [
            "restarted after spot interruption",
            "step 1 loss=2.1",
            "step 2 loss=1.9",
        ]
        assert backend.logs(JOB, tail=0) == ""


def test_logs_before_any_job_logged_are_empty() -> None:
    with mock_aws():
        assert SageMakerTrainingBackend(settings()).logs(JOB) == ""


# --- cluster status -----------------------------------------------------------------------------------------------
def _summary(name: str, secondary: str) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
        "CreationTime": datetime(2026, 11, 27, tzinfo=UTC),
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": secondary,
    }


def _quota(name: str, value: float) -> dict[str, Any]:
    return {
        "ServiceCode": "sagemaker",
        "QuotaCode": f"L-{abs(hash(name)) % 10**8:08d}",
        "QuotaName": name,
        "Value": value,
    }


def test_cluster_status_reports_sagemakers_jobs_and_the_accounts_quota() -> None:
    sm, sm_stub = stubbed("sagemaker")
    quotas, quota_stub = stubbed("service-quotas")
    sm_stub.add_response(
        "list_training_jobs",
        {"TrainingJobSummaries": [_summary("ftjob-a", "Training"), _summary("ftjob-b", "Starting")], "NextToken": "t"},
        {"StatusEquals": "InProgress"},
    )
    sm_stub.add_response(
        "list_training_jobs",
        {"TrainingJobSummaries": [_summary("ftjob-c", "Interrupted")]},
        {"StatusEquals": "InProgress", "NextToken": "t"},
    )
    quota_stub.add_response(
        "list_service_quotas",
        {
            "Quotas": [
                _quota("ml.g5.2xlarge for training job usage", 4.0),
                _quota("ml.g5.2xlarge for spot training job usage", 2.0),
                _quota("ml.g5.xlarge for training job usage", 8.0),
            ]
        },
        {"ServiceCode": "sagemaker"},
    )
    backend = SageMakerTrainingBackend(settings(), clients={"sagemaker": sm, "service-quotas": quotas})
    with sm_stub, quota_stub:
        status = backend.cluster_status()
    assert status["runs"] == {"running": ["ftjob-a"], "queued": ["ftjob-b", "ftjob-c"]}
    assert status["instance_type"] == "ml.g5.2xlarge"
    assert status["quota"]["name"] == "ml.g5.2xlarge for training job usage" and status["quota"]["value"] == 4.0


def test_cluster_status_without_quota_access_says_so_instead_of_guessing() -> None:
    sm, sm_stub = stubbed("sagemaker")
    quotas, quota_stub = stubbed("service-quotas")
    sm_stub.add_response("list_training_jobs", {"TrainingJobSummaries": []})
    quota_stub.add_client_error(
        "list_service_quotas", service_error_code="AccessDeniedException", service_message="nope"
    )
    backend = SageMakerTrainingBackend(
        settings(sagemaker_use_spot=True), clients={"sagemaker": sm, "service-quotas": quotas}
    )
    with sm_stub, quota_stub:
        status = backend.cluster_status()
    assert status["quota"] == {"name": "ml.g5.2xlarge for spot training job usage", "value": None, "error": "nope"}
    assert status["runs"] == {"running": [], "queued": []}
