"""The status worker's logic: what the trainer writes under `artifacts/{tenant}/{job_id}/` becomes job state.

progress.json → metrics events and the job's progress/ETA; checkpoints/…/adapter_model.safetensors → a checkpoint;
result.json (written last, the source of truth) → succeeded | failed | cancelled and the fine-tuned model.

Each start of the trainer on a job is an attempt (a run that died resumes from its checkpoint as attempt n + 1);
progress.json and result.json carry its number, so an earlier attempt's late files never move the job: progress of a
newer attempt may restart below the step the dead one reached, and a result of an older attempt is ignored.
"""

from __future__ import annotations

import re
from typing import Any

from functions.core import ids, names
from functions.core.models import Checkpoint, FineTunedModel, Job, JobStatus, now
from functions.core.observability import log
from functions.core.s3events import ObjectEvent
from functions.core.settings import get_settings
from functions.jobs import results
from functions.jobs.launch import mark_running
from functions.jobs.service import add_event, fine_tuned_name, status_event
from functions.store.blobs import Blobs
from functions.store.mongo import Store

ACTIVE = [JobStatus.dispatching, JobStatus.running, JobStatus.cancelling]
_CHECKPOINT = re.compile(r"^checkpoints/([^/]+)/adapter_model\.safetensors$")


def handle_object(store: Store, blobs: Blobs, event: ObjectEvent) -> None:
    parts = event.key.split("/", 3)
    if len(parts) < 4 or parts[0] + "/" != names.ARTIFACTS_PREFIX:
        return
    client_code, job_id, rest = parts[1], parts[2], parts[3]
    job = store.jobs.get(job_id, client_code)
    if job is None:
        log("warning", "status: artifact for an unknown job", key=event.key)
        return
    if rest == "progress.json":
        on_progress(store, job, _read_json(blobs, event))
    elif rest == "result.json":
        prefix = f"s3://{event.bucket}/{parts[0]}/{client_code}/{job_id}/"
        on_result(store, job, _read_json(blobs, event), prefix, blobs=blobs)
    elif match := _CHECKPOINT.match(rest):
        on_checkpoint(store, job, match.group(1), f"s3://{event.bucket}/{event.key.rsplit('/', 1)[0]}/")


def _read_json(blobs: Blobs, event: ObjectEvent) -> dict[str, Any]:
    value = blobs.get_json_object(event.bucket, event.key)
    if value is None:
        raise FileNotFoundError(f"{event.key} disappeared before it could be read")
    return value


def _attempt(record: dict[str, Any] | None) -> int:
    value = (record or {}).get("attempt")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0  # 0: a trainer without attempts


def on_progress(store: Store, job: Job, progress: dict[str, Any]) -> None:
    step, attempt, current = int(progress.get("step") or 0), _attempt(progress), _attempt(job.progress)
    behind = attempt < current or (attempt == current and step < int((job.progress or {}).get("step") or 0))
    if job.status not in ACTIVE or behind:
        return  # late or out-of-order: never move progress backwards
    if job.status == JobStatus.dispatching and job.run_name:  # it waited for a slot and has now really started
        job = mark_running(store, get_settings(), job, job.run_name, job.backend) or job
    eta = progress.get("eta_seconds")
    store.jobs.update(
        job.id, ACTIVE, progress=progress, estimated_finish=now() + int(eta) if isinstance(eta, int | float) else None
    )
    metrics = {
        "step": step,
        "total_steps": progress.get("total_steps"),
        "epoch": progress.get("epoch"),
        "train_loss": progress.get("loss"),
        "valid_loss": progress.get("eval_loss"),
        "learning_rate": progress.get("learning_rate"),
        "tokens_per_second": progress.get("tokens_per_second"),
        "eta_seconds": eta,
    }
    message = f"Step {step}/{progress.get('total_steps', '?')}: training loss={_fmt(progress.get('loss'))}"
    if progress.get("eval_loss") is not None:
        message += f", validation loss={_fmt(progress.get('eval_loss'))}"
    restarts = progress.get("worker_restarts")
    if isinstance(restarts, int) and restarts > 0 and attempt > current:  # Ray Train restarted the workers
        said = (
            f"A training worker was lost: the workers were restarted (restart {restarts}, attempt {attempt}) "
            f"and resumed from the last complete checkpoint at step {step}"
        )
        data = {"worker_restarts": restarts, "attempt": attempt, "step": step}
        add_event(store, job, f"restart:{attempt}", said, level="warn", data=data)
    key = f"metrics:{step}" if attempt <= 1 else f"metrics:{attempt}:{step}"  # a resumed attempt redoes a few steps
    add_event(store, job, key, message, data={k: v for k, v in metrics.items() if v is not None})


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "n/a"


def on_checkpoint(store: Store, job: Job, label: str, uri: str) -> None:
    step = int((job.progress or {}).get("step") or 0)
    name = fine_tuned_name(job.model, job.client_code, job.suffix, job.id)
    created = store.checkpoints.add(
        Checkpoint(
            id=ids.derived_id("ftckpt-", job.id, label),
            job_id=job.id,
            client_code=job.client_code,
            step_number=step,
            metrics={"step": step, "train_loss": (job.progress or {}).get("loss"), "label": label},
            fine_tuned_model_checkpoint=f"{name}:ckpt-step-{step}",
            uri=uri,
        )
    )
    if created:
        add_event(store, job, f"checkpoint:{label}", f"Checkpoint {label} saved at step {step}", data={"uri": uri})


def on_result(store: Store, job: Job, result: dict[str, Any], prefix: str, blobs: Blobs | None = None) -> Job | None:
    if _attempt(result) < _attempt(job.progress):
        log("warning", "status: ignoring the result of an earlier attempt", job_id=job.id, attempt=_attempt(result))
        return None
    status = result.get("status")
    if status == "succeeded":
        name = fine_tuned_name(job.model, job.client_code, job.suffix, job.id)
        adapter_uri = str(result.get("adapter_uri") or prefix + "adapter/")
        store.models.add(
            FineTunedModel(
                id=name, client_code=job.client_code, base_model=job.model, job_id=job.id, adapter_uri=adapter_uri
            )
        )
        where = results.split_s3_prefix(prefix)
        result_file = results.publish(store, blobs, job, *where) if blobs is not None and where else None
        done = store.jobs.transition(
            job.id,
            ACTIVE,
            JobStatus.succeeded,
            result_files=[result_file] if result_file else [],
            fine_tuned_model=name,
            trained_tokens=int(result.get("trained_tokens") or 0),
            finished_at=now(),
            estimated_finish=None,
            result=result,
        )
        if done:
            add_event(store, done, "model", f"New fine-tuned model created: {name}", data={"model": name})
    elif status == "cancelled":
        done = store.jobs.transition(job.id, ACTIVE, JobStatus.cancelled, finished_at=now(), estimated_finish=None)
    else:
        reported = result.get("error")
        given: dict[str, Any] = reported if isinstance(reported, dict) else {}
        error = {
            "code": str(given.get("code") or "training_failed"),
            "message": str(given.get("message") or "the trainer failed without saying why"),
            "param": given.get("param"),
        }
        done = store.jobs.transition(
            job.id, ACTIVE, JobStatus.failed, error=error, finished_at=now(), estimated_finish=None
        )
    if done:
        status_event(store, done)
    return done


# SageMaker's training states, as EventBridge reports them; anything else (InProgress, Stopping) is no news.
_SAGEMAKER_ENDED = {"Failed", "Stopped", "Completed"}


def on_backend_event(store: Store, blobs: Blobs, artifacts_bucket: str, event: dict[str, Any]) -> None:
    """A backend's own state change (EventBridge "SageMaker Training Job State Change"). result.json stays the
    source of truth: this settles only runs that ended without one (a crash, a stop before the trainer started)."""
    if event.get("detail-type") != "SageMaker Training Job State Change":
        log("info", "status: ignoring event", detail_type=event.get("detail-type"))
        return
    detail = event.get("detail") or {}
    state = detail.get("TrainingJobStatus")
    job = store.jobs.get(str(detail.get("TrainingJobName", "")))
    if job is None or state not in _SAGEMAKER_ENDED or job.status.terminal:
        return
    prefix = f"{names.ARTIFACTS_PREFIX}{job.client_code}/{job.id}/"
    result = blobs.get_json_object(artifacts_bucket, prefix + "result.json")
    if result is not None:
        on_result(store, job, result, f"s3://{artifacts_bucket}/{prefix}", blobs=blobs)
    elif state == "Stopped":
        on_result(store, job, {"status": "cancelled"}, f"s3://{artifacts_bucket}/{prefix}")
    elif state == "Failed":
        reason = str(detail.get("FailureReason") or "SageMaker reported the training job failed")
        on_result(store, job, {"status": "failed", "error": {"code": "training_failed", "message": reason}}, prefix)
    # Completed without result.json: the object event is on its way (or lost: the reconciler checks).
