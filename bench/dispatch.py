"""Dispatch: jobs/s through the local queue and the dispatch worker, and submit → running latency.

Real moto server (SQS, S3), the real dispatch handler driven by the same SqsPoller as `make run`, and an
in-process backend that records submits (the trainer's own start-up is the trainer's cost, measured elsewhere).
Baseline, in the same run: SQS alone — the same messages sent, received and deleted with no worker — so the
ratio is what the worker adds on top of the queue.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3

from functions.core import names
from functions.core.models import Job, JobStatus
from functions.core.settings import Settings
from functions.jobs import launch
from functions.local.procs import start_moto
from functions.local.resources import ensure_resources
from functions.local.sqs_poller import SqsPoller
from functions.store.mongo import Store
from tests.helpers.dispatch import DATASET_ID, RecordingBackend, store_with_dataset


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--latency-jobs", type=int, default=40)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    with start_moto() as moto:
        settings = Settings(_env_file=None, aws_endpoint_url=moto.url)
        s3 = boto3.client("s3", endpoint_url=moto.url)
        sqs = boto3.client("sqs", endpoint_url=moto.url)
        res = ensure_resources(s3, sqs, settings)
        url = res.url(names.DISPATCH_QUEUE)
        baseline = _sqs_only(sqs, url, args.jobs)
        store, backend = store_with_dataset("bench"), RecordingBackend()
        rate = _burst(sqs, url, settings, store, backend, args.jobs)
        latencies = _one_at_a_time(sqs, url, settings, store, backend, args.latency_jobs)
    print(f"SQS alone (send, receive, delete): {baseline:.0f} messages/s")
    print(
        f"dispatch worker, {args.jobs} jobs queued at once: {rate:.0f} jobs/s = {rate / baseline:.2f}x the queue alone"
    )
    p50, p95 = statistics.median(latencies) * 1000, statistics.quantiles(latencies, n=20)[18] * 1000
    print(f"submit -> running with the worker polling: p50 {p50:.0f} ms, p95 {p95:.0f} ms over {len(latencies)} jobs")
    return 0


def _sqs_only(sqs: Any, url: str, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"job_id": f"x{i}"}))
    seen = 0
    while seen < n:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if messages:  # batched, as the poller deletes
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        seen += len(messages)
    return n / (time.perf_counter() - started)


def _handler(store: Store, backend: RecordingBackend, settings: Settings) -> Any:
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            try:
                launch.handle(store, backend, settings, record["body"])
            except Exception:
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    return handler


def _submit(sqs: Any, url: str, store: Store, job_id: str) -> float:
    store.jobs.create(Job(id=job_id, client_code="acme", model="m", training_file=DATASET_ID, status=JobStatus.queued))
    at = time.perf_counter()
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"job_id": job_id}))
    return at


def _burst(sqs: Any, url: str, settings: Settings, store: Store, backend: RecordingBackend, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        _submit(sqs, url, store, f"ftjob-burst{i:019d}")
    SqsPoller(sqs, url, _handler(store, backend, settings), wait_seconds=0).drain(timeout=300)
    return n / (time.perf_counter() - started)


def _one_at_a_time(
    sqs: Any, url: str, settings: Settings, store: Store, backend: RecordingBackend, n: int
) -> list[float]:
    poller = SqsPoller(sqs, url, _handler(store, backend, settings), wait_seconds=1)  # as `make run` polls
    poller.start()
    latencies = []
    try:
        for i in range(n):
            job_id = f"ftjob-lat{i:021d}"
            at = _submit(sqs, url, store, job_id)
            deadline = time.monotonic() + 30
            while job_id not in backend.started and time.monotonic() < deadline:
                time.sleep(0.002)
            latencies.append(backend.started[job_id] - at)
    finally:
        poller.stop()
    return latencies


if __name__ == "__main__":
    sys.exit(main())
