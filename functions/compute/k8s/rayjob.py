"""Training as a KubeRay `RayJob` (ray.io/v1): the manifest, and how its status reads as a `RunState`.

One RayJob per fine-tuning job, named by `run_name(job_id)`, so a redelivered dispatch finds the first. A job of one
trainer process gets a single head pod on a GPU node, and the entrypoint asks Ray for its GPUs (`entrypointNumGpus`),
which places the trainer on the head that has them. A distributed job (`compute.workers` N x `gpus_per_worker` G,
more than one process) gets a head without GPUs (`num-cpus: 0`: the Ray Train driver only) and a worker group of N
pods with G GPUs each; the driver's TorchTrainer places one training worker per GPU on them.
The RayJob keeps the cluster only while the job runs
(`shutdownAfterJobFinishes`), deletes it `ttlSecondsAfterFinished` after the end, and fails a job that runs
longer than JOB_MAX_RUNTIME_SECONDS (`activeDeadlineSeconds`). The RayJob object itself stays after the cluster is
gone, so its final state can still be read.

Status, as KubeRay v1.7 writes it: `jobDeploymentStatus` is the operator's view (cluster starting, job submitted,
finished), `jobStatus` is Ray's own (PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED). Ray's word wins once it has a
terminal one; before that the operator's decides between pending and running.
"""

from __future__ import annotations

import json
import math
import shlex
from typing import Any

from ministudio_common.spec import Compute

from functions.compute.base import RunState, RunStatus, TrainingSpec
from functions.compute.k8s import (
    ANNOTATION_CANCELLED,
    GPU_RESOURCE,
    GPU_TOLERATION,
    LABEL_JOB_ID,
    LABEL_MANAGED_BY,
    LABEL_TENANT,
    MANAGED_BY,
)
from functions.core.settings import Settings

API_VERSION = "ray.io/v1"
KIND = "RayJob"
PLURAL = "rayjobs"
# The Ray version the trainer image installs (containers/trainer `ray` extra, the control plane's `ray` extra pin):
# KubeRay picks `ray start` flags by it.
RAY_VERSION = "2.60.0"
TRAINER_COMMAND = ("ministudio-train",)
HEAD_CONTAINER = "ray-head"
WORKER_CONTAINER, WORKER_GROUP = "ray-worker", "trainers"

# Ray's own job states (ray.job_submission.JobStatus).
_RAY_STATES = {
    "PENDING": RunState.pending,
    "RUNNING": RunState.running,
    "SUCCEEDED": RunState.succeeded,
    "FAILED": RunState.failed,
    "STOPPED": RunState.cancelled,
}
# KubeRay's JobDeploymentStatus values, for when Ray has no terminal word yet. Initializing means the Ray cluster
# is being created (often waiting for a GPU node), Waiting that the operator waits for the cluster before it
# submits, Retrying that a failed attempt is replaced by a new cluster (backoffLimit).
_DEPLOYMENT_STATES = {
    "": RunState.pending,
    "New": RunState.pending,
    "Initializing": RunState.pending,
    "Waiting": RunState.pending,
    "Retrying": RunState.pending,
    "Running": RunState.running,
    "Failed": RunState.failed,
    "ValidationFailed": RunState.failed,
}
_SUSPENDED = ("Suspending", "Suspended")


def render(run_name: str, spec: TrainingSpec, settings: Settings) -> dict[str, Any]:
    s = settings
    if not s.trainer_image_uri:
        raise ValueError("TRAINER_IMAGE_URI is not set: the eks backend needs the trainer image to run RayJobs")
    compute = spec.effective_compute
    distributed = compute.distributed
    gpus = 0 if distributed else (compute.gpus_per_worker if spec.compute is not None else s.eks_training_gpus)
    spec_json = json.dumps(spec.to_json(), separators=(",", ":"))
    labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_JOB_ID: run_name, LABEL_TENANT: spec.tenant}
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": s.eks_training_cpu, "memory": s.eks_training_memory},
        "limits": {"memory": s.eks_training_memory},
    }
    if gpus:
        resources["requests"][GPU_RESOURCE] = resources["limits"][GPU_RESOURCE] = str(gpus)
    env = [
        {"name": "AWS_REGION", "value": s.aws_region},
        {"name": "AWS_DEFAULT_REGION", "value": s.aws_region},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        # Ray's job stop waits this long between SIGTERM and SIGKILL: time for the trainer's checkpoint.
        {"name": "RAY_JOB_STOP_WAIT_TIME_S", "value": str(max(1, math.ceil(s.cancel_grace_seconds)))},
    ]
    pod_spec: dict[str, Any] = {
        "serviceAccountName": s.eks_service_account,  # EKS Pod Identity gives it the artifacts bucket
        # Deleting the cluster (cancel, deadline) sends SIGTERM first: the trainer checkpoints in the grace.
        "terminationGracePeriodSeconds": max(30, math.ceil(s.cancel_grace_seconds) + 15),
        "containers": [
            {
                "name": HEAD_CONTAINER,
                "image": s.trainer_image_uri,
                "resources": resources,
                "env": env,
                "ports": [
                    {"name": "gcs", "containerPort": 6379},
                    {"name": "dashboard", "containerPort": 8265},
                    {"name": "client", "containerPort": 10001},
                ],
                # PyTorch data loaders share tensors through /dev/shm, which a container gets only 64 MiB of by default.
                "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],  # noqa: S108 - in the pod, not here
            }
        ],
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}],
    }
    if gpus:
        pod_spec["tolerations"] = [GPU_TOLERATION]
    head_params = {"dashboard-host": "0.0.0.0", **({"num-cpus": "0"} if distributed else {})}
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": run_name, "namespace": s.eks_namespace, "labels": labels},
        "spec": {
            "entrypoint": shlex.join([*TRAINER_COMMAND, "--spec-json", spec_json]),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": s.eks_job_ttl_seconds,
            "activeDeadlineSeconds": s.job_max_runtime_seconds,
            # A pod evicted or a node lost mid-run: KubeRay starts a new cluster and the trainer resumes from its last
            # checkpoint as the next attempt. A trainer that failed on its own wrote result.json, and a retry of it
            # ends at once with that reason (ministudio_train.cli.refuse_after_own_failure).
            "backoffLimit": s.eks_rayjob_retries,
            "submissionMode": "K8sJobMode",  # the submitter pod follows the job's logs: `logs()` reads them
            "metadata": {"job_id": spec.job_id, "tenant": spec.tenant},
            "rayClusterSpec": {
                "rayVersion": RAY_VERSION,
                "headGroupSpec": {
                    "rayStartParams": head_params,
                    "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                },
            },
            "submitterPodTemplate": _submitter(s, labels),
        },
    }
    if gpus:
        body["spec"]["entrypointNumGpus"] = gpus
    if distributed:
        body["spec"]["rayClusterSpec"]["workerGroupSpecs"] = [_workers(pod_spec, labels, compute, s)]
    return body


def _workers(head: dict[str, Any], labels: dict[str, str], compute: Compute, s: Settings) -> dict[str, Any]:
    """N identical pods of G GPUs (and a CPU per training process on them), each one Ray node for TorchTrainer."""
    gpus = compute.gpus_per_worker
    cpus = max(1, gpus) * compute.cpus_per_worker
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": str(cpus), "memory": s.eks_training_memory},
        "limits": {"memory": s.eks_training_memory},
    }
    if gpus:
        resources["requests"][GPU_RESOURCE] = resources["limits"][GPU_RESOURCE] = str(gpus)
    container = {k: v for k, v in head["containers"][0].items() if k != "ports"}  # the head's ports are its own
    container.update(name=WORKER_CONTAINER, resources=resources)
    pod = {**head, "containers": [container], **({"tolerations": [GPU_TOLERATION]} if gpus else {})}
    n = compute.workers
    return {
        "groupName": WORKER_GROUP,
        "replicas": n,
        "minReplicas": n,
        "maxReplicas": n,
        "rayStartParams": {},
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }


def _submitter(s: Settings, labels: dict[str, str]) -> dict[str, Any]:
    """`ray job submit` needs the ray CLI (the trainer image has it) but no GPU: small, on a system node."""
    return {
        "metadata": {"labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": s.eks_service_account,
            "containers": [
                {
                    "name": "ray-job-submitter",
                    "image": s.trainer_image_uri,
                    "resources": {
                        "requests": {"cpu": "200m", "memory": "512Mi"},
                        "limits": {"memory": "1Gi"},
                    },
                }
            ],
        },
    }


def to_status(run_name: str, obj: dict[str, Any]) -> RunStatus:
    status = obj.get("status") or {}
    deployment = str(status.get("jobDeploymentStatus") or "")
    ray = str(status.get("jobStatus") or "")
    cancelled = ANNOTATION_CANCELLED in ((obj.get("metadata") or {}).get("annotations") or {})
    message = _message(status)
    backend_id = status.get("jobId") or (obj.get("metadata") or {}).get("uid")

    if deployment in _SUSPENDED:
        # Ours when we cancelled it; otherwise an admission controller (Kueue) holds it until there is room.
        state = RunState.cancelled if cancelled else RunState.pending
    elif ray in ("SUCCEEDED", "FAILED", "STOPPED"):
        state = _RAY_STATES[ray]
    elif deployment == "Complete":  # the operator says finished but Ray's status was lost with the cluster
        state = RunState.failed
        message = message or f"KubeRay marked the RayJob Complete with Ray job status {ray or 'unknown'}"
    else:
        state = _DEPLOYMENT_STATES.get(deployment, RunState.running)  # newer statuses: keep polling
        if state is RunState.running and ray == "PENDING":
            state = RunState.pending
    if state is RunState.failed and cancelled:
        state = RunState.cancelled  # deleting the cluster on cancel can surface as a failure
    if state is RunState.failed and status.get("reason") == "DeadlineExceeded":
        message = (
            f"the run exceeded JOB_MAX_RUNTIME_SECONDS (activeDeadlineSeconds) and was stopped; {message or ''}"
        ).rstrip("; ")
    return RunStatus(run_name, state, message if state is not RunState.running else None, None, backend_id)


def _message(status: dict[str, Any]) -> str | None:
    reason, message = status.get("reason"), status.get("message")
    parts = [str(p) for p in (reason, message) if p]
    return ": ".join(parts) or None
