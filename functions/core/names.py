"""Resource names shared by the code, the local runtime and the CDK stacks, so they cannot drift.

Every name here is a *default*: in AWS the stacks pass the real (environment-prefixed) names as environment
variables; locally the runtime creates resources with exactly these names.
"""

from __future__ import annotations

APP = "ministudio"

# Buckets (seed name AWS_BUCKET_NAME for datasets; artifacts default to the same bucket).
DATASETS_BUCKET = f"{APP}-datasets"

# S3 key prefixes. Each ends with "/" so a notification filter on it matches nothing else.
DATASETS_PREFIX = "datasets/"  # datasets/{client_code}/{file_id}/{filename}   API uploads
UPLOADS_PREFIX = "uploads/"  # uploads/{client_code}/{upload_id}/...         presigned POST and upload parts
INCOMING_PREFIX = "incoming/"  # incoming/{client_code}/{any name}           files dropped into the bucket
ARTIFACTS_PREFIX = "artifacts/"  # artifacts/{client_code}/{job_id}/...       trainer output

# Prefixes whose ObjectCreated events go to the ingest queue.
INGEST_PREFIXES = (DATASETS_PREFIX, UPLOADS_PREFIX, INCOMING_PREFIX)

# SQS queues; each has a dead-letter queue named f"{name}-dlq".
INGEST_QUEUE = f"{APP}-ingest"
DISPATCH_QUEUE = f"{APP}-dispatch"
STATUS_QUEUE = f"{APP}-status"
QUEUES = (INGEST_QUEUE, DISPATCH_QUEUE, STATUS_QUEUE)
DLQ_SUFFIX = "-dlq"
MAX_RECEIVE_COUNT = 5

# Worker function timeouts in seconds; queue visibility is VISIBILITY_FACTOR times the consumer's timeout.
WORKER_TIMEOUT_SECONDS = {INGEST_QUEUE: 300, DISPATCH_QUEUE: 60, STATUS_QUEUE: 60}
VISIBILITY_FACTOR = 6
SQS_BATCH_SIZE = 10

# MongoDB collections (seed 001 names the datasets collection).
TENANTS = "tenants"
API_KEYS = "api_keys"
DATASETS = "fine_tuning_datasets"
UPLOADS = "uploads"
JOBS = "fine_tuning_jobs"
JOB_EVENTS = "fine_tuning_job_events"
CHECKPOINTS = "fine_tuning_checkpoints"
MODELS = "models"
DEPLOYMENTS = "deployments"
INFERENCE_LOGS = "inference_logs"


def dlq_name(queue: str) -> str:
    return f"{queue}{DLQ_SUFFIX}"


def visibility_timeout(queue: str) -> int:
    return WORKER_TIMEOUT_SECONDS[queue] * VISIBILITY_FACTOR
