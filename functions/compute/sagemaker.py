"""The `sagemaker` backend: training runs as SageMaker training jobs; serving lives in `sagemaker_serving.py`
(its requests in `sagemaker_requests.py`), and what both share in `sagemaker_client.py`.

boto3 only (never the `sagemaker` SDK: it drags pandas and friends into the Lambda bundle). How the pieces line up:
- the training job is named `run_name(job_id)`, which is the job id itself, so the EventBridge "SageMaker Training
  Job State Change" event's `TrainingJobName` is what `functions/jobs/progress.py` looks the job up by;
- the trainer image reads `/opt/ml/input/config/hyperparameters.json` (every key of the TrainingSpec, each value
  JSON-encoded, because SageMaker stores hyperparameters as strings and the trainer JSON-decodes each one) and the
  `training`/`validation` channels SageMaker has already downloaded; it writes progress, checkpoints and
  result.json straight to the spec's `output` prefix, which the status worker watches;
- a job that ends without result.json (a crash, a stop before the trainer started) is settled by the EventBridge
  event, or by the reconciler through `status()`.
Capacity and errors come from AWS: cluster_status reports what SageMaker and Service Quotas say, nothing made up.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from functions.compute.base import RunState, RunStatus, TrainingSpec, stop_unless_settled
from functions.compute.sagemaker_client import (
    Clients,
    SageMakerBackendError,
    already_exists,
    error_code,
    error_message,
    is_missing,
    require,
)
from functions.core import names
from functions.core.settings import Settings, get_settings

if TYPE_CHECKING:
    pass

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TRAINING_VOLUME_GB = 100  # base weights, the dataset copy and checkpoints of a 7B-class model fit with room to spare
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"  # where the trainer copies each checkpoint (see its outputs.py)
# A separate prefix: the trainer already publishes checkpoints under `checkpoints/` itself, and the status worker
# must see each checkpoint once; this copy only exists so a managed-spot restart finds /opt/ml/checkpoints filled.
SPOT_CHECKPOINT_PREFIX = "sagemaker-checkpoints/"
_HYPERPARAMETER_CHARS = 2500  # SageMaker's limit per hyperparameter value
_MESSAGE_CHARS = 4000

# TrainingJobStatus → state; InProgress is refined by SecondaryStatus (waiting for capacity is not running yet).
_TRAINING_STATES = {
    "Completed": RunState.succeeded,
    "Failed": RunState.failed,
    "Stopped": RunState.cancelled,
    "Stopping": RunState.running,  # still alive: the trainer is checkpointing on SIGTERM
    "Deleting": RunState.missing,  # DeleteTrainingJob: the record is going away, its outcome with it
}
_WAITING = {
    "Starting",
    "Pending",
    "LaunchingMLInstances",
    "PreparingTrainingStack",
    "Downloading",
    "DownloadingTrainingImage",
    "Restarting",  # managed spot: relaunching after an interruption
    "Interrupted",  # managed spot: waiting for capacity to come back
}
# SageMaker *stops* a job that hits its time limits; for the user that is a failure, not a cancellation.
_LIMITS = {
    "MaxRuntimeExceeded": "the job ran past its time limit (JOB_MAX_RUNTIME_SECONDS) and SageMaker stopped it",
    "MaxWaitTimeExceeded": "SageMaker could not get spot capacity in time (JOB_MAX_RUNTIME_SECONDS) and stopped it",
}


# --- training ----------------------------------------------------------------------------------------------------
class SageMakerTrainingBackend:
    name = "sagemaker"

    def __init__(self, settings: Settings | None = None, *, clients: dict[str, Any] | None = None) -> None:
        self.settings = settings or get_settings()
        self.client = Clients(self.settings, clients)

    def submit(self, run_name: str, spec: TrainingSpec) -> RunStatus:
        # Describe first: a redelivered dispatch must find the job, and moto (unlike SageMaker) would overwrite it.
        existing = self.status(run_name)
        if existing.state is not RunState.missing:
            return existing
        from botocore.exceptions import ClientError

        try:
            created = self.client("sagemaker").create_training_job(**self.training_job_request(run_name, spec))
        except ClientError as exc:
            if already_exists(exc):  # a concurrent submit won between our describe and create
                return self.status(run_name)
            raise SageMakerBackendError(f"CreateTrainingJob {run_name}: {error_message(exc)}") from exc
        return RunStatus(run_name, RunState.pending, backend_id=created.get("TrainingJobArn"))

    def status(self, run_name: str) -> RunStatus:
        job = self._describe(run_name)
        return RunStatus(run_name, RunState.missing) if job is None else training_status(run_name, job)

    def cancel(self, run_name: str) -> RunStatus:
        return stop_unless_settled(self.status, run_name, self._stop)

    def _stop(self, run_name: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client("sagemaker").stop_training_job(TrainingJobName=run_name)
        except ClientError as exc:
            # Ended or already stopping meanwhile ("... is not in progress"), or gone: status says which.
            if error_code(exc) != "ValidationException":
                raise SageMakerBackendError(f"StopTrainingJob {run_name}: {error_message(exc)}") from exc

    def logs(self, run_name: str, tail: int = 200) -> str:
        """The last `tail` lines across the job's streams (`{job}/algo-1-...`, one per instance and restart)."""
        if tail <= 0:
            return ""
        from botocore.exceptions import ClientError

        logs = self.client("logs")
        events: list[tuple[int, int, str]] = []
        try:
            pages = logs.get_paginator("describe_log_streams").paginate(
                logGroupName=TRAINING_LOG_GROUP, logStreamNamePrefix=f"{run_name}/"
            )
            streams = [s["logStreamName"] for page in pages for s in page.get("logStreams", [])]
            for order, stream in enumerate(streams):
                got = logs.get_log_events(
                    logGroupName=TRAINING_LOG_GROUP, logStreamName=stream, limit=tail, startFromHead=False
                )
                events += [(int(e.get("timestamp", 0)), order, str(e.get("message", ""))) for e in got["events"]]
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":  # no log group yet: no job has logged in the region
                return ""
            raise SageMakerBackendError(f"CloudWatch Logs for {run_name}: {error_message(exc)}") from exc
        events.sort(key=lambda e: (e[0], e[1]))
        lines = [line for _, _, message in events for line in message.rstrip("\n").splitlines()]
        return "\n".join(lines[-tail:])

    def cluster_status(self) -> dict[str, Any]:
        """What SageMaker can say: this region's in-progress jobs (waiting vs training) and the account's quota for
        the training instance type. SageMaker has no cluster, so no CPU/GPU/memory totals are reported."""
        s = self.settings
        running: list[str] = []
        queued: list[str] = []
        pages = self.client("sagemaker").get_paginator("list_training_jobs").paginate(StatusEquals="InProgress")
        for page in pages:
            for job in page.get("TrainingJobSummaries", []):
                waiting = job.get("SecondaryStatus") in _WAITING
                (queued if waiting else running).append(job["TrainingJobName"])
        return {
            "backend": self.name,
            "region": s.aws_region,
            "instance_type": s.sagemaker_training_instance_type,
            "spot": s.sagemaker_use_spot,
            "runs": {"running": running, "queued": queued},
            "quota": self._quota(s.sagemaker_training_instance_type, spot=s.sagemaker_use_spot),
        }

    # --- helpers ----------------------------------------------------------------------------------------------
    def training_job_request(self, run_name: str, spec: TrainingSpec) -> dict[str, Any]:
        s = self.settings
        output = tenant_output(spec)
        channels = [_channel("training", spec.training_file)]
        if spec.validation_file:
            channels.append(_channel("validation", spec.validation_file))
        stopping: dict[str, int] = {"MaxRuntimeInSeconds": s.job_max_runtime_seconds}
        request: dict[str, Any] = {
            "TrainingJobName": run_name,
            "AlgorithmSpecification": {
                "TrainingImage": require(s.trainer_image_uri, "TRAINER_IMAGE_URI"),
                "TrainingInputMode": "File",
            },
            "RoleArn": require(s.sagemaker_execution_role_arn, "SAGEMAKER_EXECUTION_ROLE_ARN"),
            "HyperParameters": hyperparameters(spec),
            "InputDataConfig": channels,
            "OutputDataConfig": {"S3OutputPath": output},  # SageMaker adds {job}/output/model.tar.gz (the adapter)
            "ResourceConfig": {
                "InstanceType": s.sagemaker_training_instance_type,
                # N instances: the trainer on each runs torch's launcher over SageMaker's host list (its launcher.py)
                "InstanceCount": spec.effective_compute.workers,
                "VolumeSizeInGB": TRAINING_VOLUME_GB,
            },
            "StoppingCondition": stopping,
            "Environment": {"AWS_REGION": s.aws_region, "AWS_DEFAULT_REGION": s.aws_region},
            "Tags": [
                {"Key": "ministudio:job-id", "Value": spec.job_id},
                {"Key": "ministudio:tenant", "Value": spec.tenant},
            ],
        }
        if s.sagemaker_use_spot:
            request["EnableManagedSpotTraining"] = True
            # The reconciler fails the job at started + JOB_MAX_RUNTIME_SECONDS whatever SageMaker does, so the wait
            # for spot capacity comes out of the same budget instead of extending it.
            stopping["MaxWaitTimeInSeconds"] = s.job_max_runtime_seconds
            request["CheckpointConfig"] = {
                "S3Uri": output + SPOT_CHECKPOINT_PREFIX,
                "LocalPath": CHECKPOINT_LOCAL_PATH,
            }
        return request

    def _describe(self, run_name: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return dict(self.client("sagemaker").describe_training_job(TrainingJobName=run_name))
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise SageMakerBackendError(f"DescribeTrainingJob {run_name}: {error_message(exc)}") from exc

    def _quota(self, instance_type: str, *, spot: bool) -> dict[str, Any]:
        """Service Quotas names SageMaker's per-instance-type quotas "<type> for [spot ]training job usage"."""
        from botocore.exceptions import BotoCoreError, ClientError

        wanted = f"{instance_type} for {'spot ' if spot else ''}training job usage"
        try:
            pages = self.client("service-quotas").get_paginator("list_service_quotas").paginate(ServiceCode="sagemaker")
            for page in pages:
                for quota in page.get("Quotas", []):
                    if quota.get("QuotaName") == wanted:
                        return {"name": wanted, "code": quota.get("QuotaCode"), "value": quota.get("Value")}
        except (ClientError, BotoCoreError) as exc:  # no servicequotas:ListServiceQuotas permission, or no endpoint
            detail = error_message(exc) if isinstance(exc, ClientError) else str(exc)
            return {"name": wanted, "value": None, "error": detail or type(exc).__name__}
        return {"name": wanted, "value": None, "error": "Service Quotas lists no such quota in this region"}


def create_backend(settings: Settings) -> SageMakerTrainingBackend:
    return SageMakerTrainingBackend(settings)


def tenant_output(spec: TrainingSpec) -> str:
    """The spec's output, checked to be `s3://{bucket}/artifacts/{tenant}/{job_id}/`: SageMaker writes with the
    execution role, which can write any tenant's prefix, so the prefix is checked here."""
    parsed = urlparse(spec.output)
    expected = f"{names.ARTIFACTS_PREFIX}{spec.tenant}/{spec.job_id}/"
    if parsed.scheme != "s3" or not parsed.netloc or parsed.path.lstrip("/") != expected:
        raise ValueError(f"training output {spec.output!r} must be s3://<bucket>/{expected}")
    return f"s3://{parsed.netloc}/{expected}"


def hyperparameters(spec: TrainingSpec) -> dict[str, str]:
    """Every spec field (hyperparameters flattened in), JSON-encoded: SageMaker keeps strings, and the trainer
    JSON-decodes each value, so a tenant named "null" or a suffix "123" arrives as the same string, not None or 123."""
    flat: dict[str, Any] = {k: v for k, v in spec.to_json().items() if k != "hyperparameters" and v is not None}
    for key, value in spec.hyperparameters.items():
        if key in flat:
            raise ValueError(f"hyperparameter {key!r} clashes with the job spec field of that name")
        flat[key] = value
    encoded = {key: json.dumps(value, separators=(",", ":")) for key, value in flat.items()}
    for key, value in encoded.items():
        if len(value) > _HYPERPARAMETER_CHARS:
            raise ValueError(f"{key} is {len(value)} characters; SageMaker takes at most {_HYPERPARAMETER_CHARS}")
    return encoded


def _channel(name: str, uri: str) -> dict[str, Any]:
    if not uri.startswith("s3://"):
        raise ValueError(f"SageMaker reads channels from S3; {name} is {uri!r}")
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
        },
        "ContentType": "application/jsonl",
        "CompressionType": "None",
        "InputMode": "File",
    }


def training_status(run_name: str, job: dict[str, Any]) -> RunStatus:
    """DescribeTrainingJob → RunStatus. An unknown (newer) status keeps polling, never reads as terminal."""
    status, secondary = str(job.get("TrainingJobStatus")), str(job.get("SecondaryStatus"))
    state = _TRAINING_STATES.get(status, RunState.running)
    message = job.get("FailureReason") or _last_transition(job) or None
    if status == "InProgress" and secondary in _WAITING:
        state = RunState.pending
    if status == "Stopped" and secondary in _LIMITS:
        state, message = RunState.failed, _LIMITS[secondary]
    if message and len(message) > _MESSAGE_CHARS:
        message = message[:_MESSAGE_CHARS] + "…"
    return RunStatus(run_name, state, message, None, job.get("TrainingJobArn"))


def _last_transition(job: dict[str, Any]) -> str | None:
    transitions = job.get("SecondaryStatusTransitions") or []
    if not transitions:
        return None
    return str(transitions[-1].get("StatusMessage") or "") or None
