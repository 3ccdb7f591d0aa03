"""The sample events under events/ that `sam local invoke` uses have the shapes AWS delivers, and match the wiring.

The EventBridge events follow SageMaker's documented "State Change" events; the SQS events are what Lambda's SQS
event source hands a function. Powertools' data classes (what the workers use) must read them.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, SQSEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.core import names

EVENTS = Path(__file__).resolve().parents[2] / "events"
JOB_ID = re.compile(r"^ftjob-[a-z2-7]{24}$")  # functions.core.ids: prefix + 24 lowercase base32 characters
TRAINING_STATUSES = {"InProgress", "Completed", "Failed", "Stopping", "Stopped"}
ENDPOINT_STATUSES = {
    "OutOfService",
    "Creating",
    "Updating",
    "SystemUpdating",
    "RollingBack",
    "InService",
    "Deleting",
    "Failed",
    "UpdateRollbackFailed",
}
ENVELOPE = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
SQS_RECORD = {
    "messageId",
    "receiptHandle",
    "body",
    "attributes",
    "messageAttributes",
    "md5OfBody",
    "eventSource",
    "eventSourceARN",
    "awsRegion",
}


def _load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def _sqs_records(name: str, queue: str) -> list[SQSRecord]:
    event = _load(name)
    records = list(SQSEvent(event).records)
    assert records
    for raw, record in zip(event["Records"], records, strict=True):
        assert set(raw) == SQS_RECORD
        assert record.event_source == "aws:sqs"
        assert record.event_source_arn.rsplit(":", 1)[-1] == f"{queue}-dev"
        assert raw["md5OfBody"] == hashlib.md5(record.body.encode()).hexdigest()  # SQS's own checksum
        assert int(record.attributes.approximate_receive_count) >= 1
    return records


def test_training_job_state_change_is_sagemakers_event() -> None:
    event = _load("eventbridge_training_job_state_change.json")
    assert set(event) == ENVELOPE
    parsed = EventBridgeEvent(event)
    assert (parsed.source, parsed.detail_type) == ("aws.sagemaker", "SageMaker Training Job State Change")
    detail = parsed.detail
    assert detail["TrainingJobStatus"] in TRAINING_STATUSES
    assert parsed.resources == [detail["TrainingJobArn"]]
    assert detail["TrainingJobArn"].endswith(f":training-job/{detail['TrainingJobName']}")
    assert JOB_ID.match(detail["TrainingJobName"]) and len(detail["TrainingJobName"]) <= 63
    assert detail["OutputDataConfig"]["S3OutputPath"].split("/", 3)[3].startswith(names.ARTIFACTS_PREFIX)
    for key in ("CreationTime", "LastModifiedTime"):
        assert str(detail[key]).isdigit()  # SageMaker sends epoch milliseconds


def test_endpoint_state_change_is_sagemakers_event() -> None:
    parsed = EventBridgeEvent(_load("eventbridge_endpoint_state_change.json"))
    assert (parsed.source, parsed.detail_type) == ("aws.sagemaker", "SageMaker Endpoint State Change")
    assert parsed.detail["EndpointStatus"].replace("_", "").lower() in {s.lower() for s in ENDPOINT_STATUSES}
    assert parsed.resources == [parsed.detail["EndpointArn"]]


@pytest.mark.parametrize(
    "name", ["eventbridge_training_job_state_change.json", "eventbridge_endpoint_state_change.json"]
)
def test_state_change_events_match_the_rule_the_stack_deploys(name: str) -> None:
    pytest.importorskip("aws_cdk", reason="the `cdk` extra is not installed")
    from infra.cdk.stacks.compute_sagemaker import STATE_CHANGES

    event = _load(name)
    assert event["source"] == "aws.sagemaker" and event["detail-type"] in STATE_CHANGES


def test_status_queue_delivers_the_eventbridge_event_as_the_message_body() -> None:
    (record,) = _sqs_records("eventbridge_training_job_state_change_sqs.json", names.STATUS_QUEUE)
    assert json.loads(record.body) == _load("eventbridge_training_job_state_change.json")


def test_dispatch_message_carries_only_a_job_id() -> None:
    (record,) = _sqs_records("sqs_dispatch_job.json", names.DISPATCH_QUEUE)
    body = json.loads(record.body)
    assert set(body) == {"job_id"} and JOB_ID.match(body["job_id"])


def test_dispatch_event_runs_through_a_partial_batch_processor() -> None:
    # The way the dispatch worker consumes it: every record handled → no item failures reported.
    seen: list[str] = []
    result = process_partial_response(
        event=_load("sqs_dispatch_job.json"),
        record_handler=lambda record: seen.append(json.loads(record.body)["job_id"]),
        processor=BatchProcessor(event_type=EventType.SQS),
    )
    assert result == {"batchItemFailures": []}
    assert len(seen) == 1 and JOB_ID.match(seen[0])


def test_reconciler_schedule_event_is_an_eventbridge_scheduled_event() -> None:
    parsed = EventBridgeEvent(_load("eventbridge_reconcile_schedule.json"))
    assert (parsed.source, parsed.detail_type, parsed.detail) == ("aws.events", "Scheduled Event", {})
    assert parsed.resources[0].startswith("arn:aws:events:") and ":rule/" in parsed.resources[0]
