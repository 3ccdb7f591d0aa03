"""Dispatch under faults, through the real queue and worker: N jobs (default 1,000), every dispatch message sent
twice, and a crash injected right after one state write of each job in turn (queued→dispatching, the backend submit,
dispatching→running, the status event). The crashed delivery fails its batch item, SQS (moto's server) delivers it
again after its visibility timeout, and the same SqsPoller `make run` uses calls the real dispatch handler.

Prints the counts the platform promises: 0 lost (every job submitted), 0 run twice (one start per run), 0 stuck (every
job running), with the deliveries it took. Baseline in the same run: the same jobs with no duplicates and no crashes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
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
from tests.helpers.dispatch import DATASET_ID, Crash, RecordingBackend, crash_plan, inject_crashes, store_with_dataset

SHARD = 100  # jobs per store: mongomock scans a collection per query


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # a line per dispatched job would drown the counts
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    with start_moto() as moto:
        settings = Settings(_env_file=None, aws_endpoint_url=moto.url)
        sqs = boto3.client("sqs", endpoint_url=moto.url)
        s3 = boto3.client("s3", endpoint_url=moto.url)
        url = ensure_resources(s3, sqs, settings, visibility_overrides={names.DISPATCH_QUEUE: 1}).url(
            names.DISPATCH_QUEUE
        )
        calm = _run(sqs, url, settings, args.jobs, faults=False)
        faulty = _run(sqs, url, settings, args.jobs, faults=True)
    for label, result in (("no faults", calm), ("duplicates + a crash per job", faulty)):
        print(
            f"{label:>29}: {result['jobs']} jobs, {result['deliveries']} deliveries, {result['crashes']} crashes "
            f"-> lost {result['lost']}, run twice {result['twice']}, stuck {result['stuck']} "
            f"in {result['seconds']:.1f}s"
        )
    print(f"deliveries per job under faults: {faulty['deliveries'] / faulty['jobs']:.2f} (baseline 1.00)")
    return 0 if faulty["lost"] == faulty["twice"] == faulty["stuck"] == 0 else 1


def _run(sqs: Any, url: str, settings: Settings, jobs: int, *, faults: bool) -> dict[str, Any]:
    backend, totals = RecordingBackend(), Counter[str]()
    started = time.perf_counter()
    for first in range(0, jobs, SHARD):
        ids = [f"ftjob-{'f' if faults else 'c'}{i:023d}" for i in range(first, min(first + SHARD, jobs))]
        totals.update(_shard(sqs, url, settings, backend, ids, faults))
    seconds = time.perf_counter() - started
    return {
        "jobs": jobs,
        "deliveries": totals["deliveries"],
        "crashes": totals["crashes"],
        "lost": jobs - len(backend.runs),
        "twice": sum(1 for n in backend.starts.values() if n > 1),
        "stuck": totals["stuck"],
        "seconds": seconds,
    }


def _shard(
    sqs: Any, url: str, settings: Settings, backend: RecordingBackend, ids: list[str], faults: bool
) -> Counter[str]:
    store = store_with_dataset("faults")
    for job_id in ids:
        store.jobs.create(Job(id=job_id, client_code="acme", model="m", training_file=DATASET_ID))
    counts: Counter[str] = Counter()
    plan = crash_plan(ids) if faults else {}
    submit, crashing = inject_crashes(store, backend, plan) if faults else (backend.submit, backend.submit)

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            counts["deliveries"] += 1
            backend.submit = crashing  # type: ignore[method-assign]
            try:
                launch.handle(store, backend, settings, record["body"])
            except Crash:
                counts["crashes"] += 1
                failures.append({"itemIdentifier": record["messageId"]})
            finally:
                backend.submit = submit  # type: ignore[method-assign]
        return {"batchItemFailures": failures}

    for copy in range(2 if faults else 1):  # duplicates: every message sent twice
        for start in range(0, len(ids), 10):
            entries = [
                {"Id": f"{copy}-{i}", "MessageBody": json.dumps({"job_id": j})}
                for i, j in enumerate(ids[start : start + 10])
            ]
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
    poller = SqsPoller(sqs, url, handler, wait_seconds=1)
    poller.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (plan or _not_running(store)):
            time.sleep(0.2)
        poller.drain(timeout=30)  # what is still in flight (duplicates) is delivered before the shard is counted
    finally:
        poller.stop()
    counts["stuck"] = _not_running(store)
    return counts


def _not_running(store: Store) -> int:
    return sum(1 for d in store.jobs.col.find({}, {"status": 1}) if d["status"] != JobStatus.running.value)


if __name__ == "__main__":
    sys.exit(main())
