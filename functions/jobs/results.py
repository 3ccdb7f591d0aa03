"""A succeeded job's step metrics as OpenAI publishes them: a CSV result file (purpose `fine-tune-results`) listed in
the job's `result_files` and readable through the Files API (`GET /v1/files/{id}/content`).

The trainer appends one JSON line per logging step to `metrics.jsonl` under the job's artifacts (flushed before
`result.json`); this turns it into `results.csv` next to it and records a File for it. The file id derives from the
job id, so a second `result.json` event (or the run-exit path) finds the same file instead of making another.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from functions.core import ids
from functions.core.models import Dataset, DatasetStatus, Job
from functions.core.observability import log
from functions.store.blobs import Blobs
from functions.store.mongo import Store

PURPOSE = "fine-tune-results"
# OpenAI's first columns, then what Mini Studio's trainer also reports; metrics.jsonl names → CSV names.
COLUMNS = {
    "step": "step",
    "loss": "train_loss",
    "eval_loss": "valid_loss",
    "epoch": "epoch",
    "learning_rate": "learning_rate",
    "tokens_per_second": "tokens_per_second",
    "trained_tokens": "trained_tokens",
}
MAX_METRICS_BYTES = 64 * 1024 * 1024  # one short line per logging step: far more than any real run writes


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    rest = b""
    for chunk in chunks:
        rest += chunk
        *whole, rest = rest.split(b"\n")
        yield from whole
    if rest:
        yield rest


def metrics_csv(lines: Iterable[bytes]) -> tuple[bytes, int]:
    """The CSV of the metrics lines, one row per step in step order (a resumed attempt redoes a few steps: the later
    line of a step wins), and the number of rows. Lines that are not JSON objects with a step are skipped."""
    rows: dict[int, dict[str, Any]] = {}
    for raw in lines:
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        step = line.get("step") if isinstance(line, dict) else None
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            rows[step] = {name: line.get(key) for key, name in COLUMNS.items()}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS.values()), lineterminator="\n")
    writer.writeheader()
    for step in sorted(rows):
        writer.writerow({k: "" if v is None else v for k, v in rows[step].items()})
    return out.getvalue().encode(), len(rows)


def publish(store: Store, blobs: Blobs, job: Job, bucket: str, prefix: str) -> str | None:
    """Write `{prefix}results.csv` from `{prefix}metrics.jsonl` and record it as the job's result file; returns the
    file id, or None when the trainer left no metrics (the job still succeeds, with no result file)."""
    file_id = ids.derived_id("file-", job.id, "results")
    if (existing := store.datasets.get(file_id, job.client_code)) is not None:
        return existing.id
    info = blobs.head(bucket, prefix + "metrics.jsonl")
    if info is None or info.size > MAX_METRICS_BYTES:
        log("warning", "results: no usable metrics.jsonl for the job", job_id=job.id, key=prefix + "metrics.jsonl")
        return None
    data, steps = metrics_csv(_lines(blobs.iter_chunks(bucket, prefix + "metrics.jsonl")))
    key = prefix + "results.csv"
    blobs.put_bytes(bucket, key, data, content_type="text/csv")
    record = Dataset(
        id=file_id,
        client_code=job.client_code,
        filename=f"step_metrics_{job.id}.csv",
        purpose=PURPOSE,
        bucket=bucket,
        s3_key=key,
        bytes=len(data),
        source="job",
        status=DatasetStatus.validated,
        validation={"format": "csv", "lines": steps + 1, "bytes": len(data)},
    )
    stored, _ = store.datasets.insert_once(record)
    return stored.id


def split_s3_prefix(uri: str) -> tuple[str, str] | None:
    """`s3://bucket/artifacts/t/job/` → (bucket, `artifacts/t/job/`); None for anything else."""
    if not uri.startswith("s3://"):
        return None
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return (bucket, key if key.endswith("/") else key + "/") if bucket and key else None
