"""What `make run` does with the state it finds in its data directory, before it takes work again.

The documents (montydb), S3's objects (moto's recording) and Redis (AOF) come back on their own. What lived only in
processes that died with the platform is re-derived from the documents, never guessed:
- files acknowledged but not validated (or dropped into S3 without a record, their event lost) are announced to the
  ingest queue again the way S3 does it: the object is copied onto itself, which sends an `ObjectCreated` event;
- jobs `queued` are dispatched again (dispatch is idempotent by run name); jobs whose local trainer died with the
  platform continue as a new attempt that resumes from the last complete checkpoint;
- deployments that were ready start their server again (with their adapters) and show `deploying` until it answers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from functions.compute.base import RunState, TrainingBackend
from functions.compute.local import LocalBackend
from functions.compute.serving import EndpointState, ScalesToZero, ServingBackend
from functions.core import names
from functions.core.models import DatasetStatus, DeploymentStatus, JobStatus
from functions.core.observability import log
from functions.core.settings import Settings
from functions.jobs.service import add_event, request_dispatch
from functions.store.mongo import Store
from functions.store.queues import Queues

UNVALIDATED = (DatasetStatus.uploaded, DatasetStatus.validating)


@dataclass
class Restored:
    counts: dict[str, int] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)
    revalidating: list[str] = field(default_factory=list)
    redispatched: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        counted = ", ".join(f"{n} {what}" for what, n in self.counts.items())
        out = [f"Restored:     {counted}"]
        out += [f"Repaired:     {what}" for what in self.repaired]
        if self.revalidating:
            out.append(f"Validating:   {len(self.revalidating)} file(s) acknowledged before the stop")
        if self.redispatched or self.resumed:
            out.append(f"Jobs:         {len(self.redispatched)} queued again, {len(self.resumed)} resuming")
        if self.restarted:
            out.append(f"Deployments:  {len(self.restarted)} starting their servers again")
        return out


def run(s3: Any, repaired: list[str] | None = None) -> Restored:
    """Count what came back and re-derive the work that lived only in processes; the runtime calls it at start."""
    from functions.compute import get_serving_backend, get_training_backend
    from functions.core.settings import get_settings
    from functions.store.mongo import get_store
    from functions.store.queues import get_queues

    settings, store = get_settings(), get_store()
    done = Restored(counts=count(store), repaired=list(repaired or []))
    done.revalidating = revalidate(s3, store, settings)
    done.redispatched, done.resumed = resume_jobs(store, get_queues(), get_training_backend(settings))
    done.restarted = restart_deployments(store, get_queues(), get_serving_backend(settings))
    return done


def count(store: Store) -> dict[str, int]:
    live = [s.value for s in DeploymentStatus if s.live]
    return {
        "tenants": store.tenants.col.count_documents({}),
        "files": store.datasets.col.count_documents({}),
        "jobs": store.jobs.col.count_documents({}),
        "models": store.models.col.count_documents({}),
        "deployments": store.deployments.col.count_documents({"status": {"$in": live}}),
    }


def revalidate(s3: Any, store: Store, settings: Settings) -> list[str]:
    """Announce again every object under the ingest prefixes whose file is not validated yet; returns their keys."""
    bucket, touched = settings.aws_bucket_name, []
    for prefix in names.INGEST_PREFIXES:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                dataset = store.datasets.by_key(bucket, obj["Key"])
                lost = dataset is None and prefix == names.INCOMING_PREFIX  # a drop whose event never arrived
                if lost or (dataset is not None and dataset.status in UNVALIDATED):
                    _announce(s3, bucket, obj["Key"])
                    touched.append(obj["Key"])
    return touched


def _announce(s3: Any, bucket: str, key: str) -> None:
    head = s3.head_object(Bucket=bucket, Key=key)
    s3.copy_object(
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key},
        MetadataDirective="REPLACE",  # copying onto itself needs a change; the metadata stays what it was
        Metadata=head.get("Metadata", {}),
        ContentType=head.get("ContentType", "binary/octet-stream"),
    )


def resume_jobs(store: Store, queues: Queues, backend: TrainingBackend) -> tuple[list[str], list[str]]:
    """Dispatch queued jobs again; resume the local runs that died with the platform. Returns both id lists."""
    redispatched = []
    for job in store.jobs.in_status([JobStatus.queued, JobStatus.dispatching]):
        request_dispatch(queues, job.id)
        redispatched.append(job.id)
    resumed: list[str] = []
    if not isinstance(backend, LocalBackend):
        return redispatched, resumed  # Ray, EKS and SageMaker runs outlive the control plane: the reconciler looks
    for job in store.jobs.in_status([JobStatus.running]):
        if job.run_name is None or job.backend != "local":
            continue
        status = backend.status(job.run_name)
        # It ended unfinished while the job still says running: it died with the platform (kill -9: failed without
        # an exit code) or was stopped by its shutdown (cancelled). A crash or a user's cancel settled the job already.
        if status.state in (RunState.failed, RunState.cancelled):
            backend.retry(job.run_name)
            message = "The platform restarted; training resumes from its last complete checkpoint"
            add_event(store, job, f"resumed:{time.time_ns()}", message)
            resumed.append(job.id)
    return redispatched, resumed


def restart_deployments(store: Store, queues: Queues, backend: ServingBackend) -> list[str]:
    """Deploy again what was waiting for its deploy message; start again the servers of deployments that were
    ready (or coming up) when the platform stopped."""
    restarted = []
    for waiting in store.deployments.in_status([DeploymentStatus.pending]):
        queues.send_deployment(waiting.id, "deploy")  # dispatch finds an existing server by name: idempotent
        restarted.append(waiting.id)
    if not isinstance(backend, ScalesToZero):
        return restarted  # EKS and SageMaker servers outlive the control plane
    for deployment in store.deployments.in_status([DeploymentStatus.ready, DeploymentStatus.deploying]):
        if not deployment.dedicated or deployment.backend != "local":
            continue  # an adapter comes back with its host's server
        if backend.status(deployment.name).state is EndpointState.ready:
            continue
        try:  # its server died with the platform: mark it stopped, then start it as a wake-up would
            backend.sleep(deployment.name)
            backend.wake(deployment.name)
        except Exception as exc:  # one broken deployment must not keep the platform from starting
            log("error", "restore: could not start a deployment's server", deployment=deployment.id, error=str(exc))
            continue
        store.deployments.update(
            deployment.id,
            [DeploymentStatus.ready, DeploymentStatus.deploying],
            status=DeploymentStatus.deploying,
            status_message="starting again after the platform restarted",
        )
        restarted.append(deployment.id)
    return restarted
