"""The local runtime's AWS stand-ins, against real children: moto's server and redis-server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import boto3
import pytest
import redis
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.core import names
from functions.core.settings import Settings
from functions.local.lambda_context import LambdaContext
from functions.local.procs import Child, find_redis_server, start_moto, start_redis
from functions.local.resources import LocalResources, ensure_resources
from functions.local.sqs_poller import SqsPoller

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
SHORT_VISIBILITY = 1  # seconds: lets a failed message come back within the test
FAST = {queue: SHORT_VISIBILITY for queue in names.QUEUES}
needs_redis = pytest.mark.skipif(find_redis_server() is None, reason="redis-server is not installed")


# -- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[Child]:
    with start_moto() as child:
        yield child


@pytest.fixture(scope="module")
def redis_server() -> Iterator[Child]:
    if find_redis_server() is None:
        pytest.skip("redis-server is not installed")
    with start_redis() as child:
        yield child


@pytest.fixture(scope="module")
def s3(moto: Child) -> S3Client:
    return boto3.client(
        "s3", endpoint_url=moto.url, region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
    )


@pytest.fixture(scope="module")
def sqs(moto: Child) -> SQSClient:
    return boto3.client(
        "sqs", endpoint_url=moto.url, region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
    )


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(_env_file=None, aws_bucket_name=names.DATASETS_BUCKET, artifacts_bucket_name=None)


@pytest.fixture(scope="module")
def resources(s3: S3Client, sqs: SQSClient, settings: Settings) -> LocalResources:
    return ensure_resources(s3, sqs, settings, visibility_overrides=FAST)


@pytest.fixture
def queues(sqs: SQSClient, resources: LocalResources) -> LocalResources:
    """The module's resources with every queue and DLQ empty, in flight included.

    Not PurgeQueue: SQS (and moto) allow one purge a minute per queue. A message a previous test left in flight
    comes back within SHORT_VISIBILITY and is deleted then.
    """
    for url in [*resources.queue_urls.values(), *resources.dlq_urls.values()]:
        deadline = time.monotonic() + 10 * SHORT_VISIBILITY
        while message_count(sqs, url) and time.monotonic() < deadline:
            for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            ):
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        assert message_count(sqs, url) == 0, f"could not empty {url}"
    return resources


# -- helpers ------------------------------------------------------------------------------------------------------


def running(pid: int) -> bool:
    """Whether pid is a live process (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def eventually(condition: Callable[[], bool], timeout: float = 20.0, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


def message_count(sqs: SQSClient, url: str) -> int:
    """Messages on a queue, visible or in flight."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def take_events(sqs: SQSClient, url: str) -> list[tuple[str, str, str]]:
    """Every message on the queue, in order, as (event, bucket, decoded key); removes them."""
    seen: list[tuple[str, str, str]] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        for message in messages:
            body = json.loads(message["Body"])
            if body.get("Event") == "s3:TestEvent":
                seen.append(("s3:TestEvent", body["Bucket"], ""))
            for record in body.get("Records", []):
                # moto quote_plus-encodes keys, "/" included (real S3 leaves "/"): decode, never compare raw.
                key = unquote_plus(record["s3"]["object"]["key"])
                seen.append((record["eventName"], record["s3"]["bucket"]["name"], key))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return seen


def send(sqs: SQSClient, url: str, *bodies: str) -> dict[str, str]:
    """Send each body; returns message id → body."""
    return {sqs.send_message(QueueUrl=url, MessageBody=body)["MessageId"]: body for body in bodies}


def poll_until(poller: SqsPoller, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        poller.run_once()


# -- children -----------------------------------------------------------------------------------------------------


@needs_redis
def test_children_stop_leaving_no_process_and_never_see_port(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given PORT set for the API, when the runtime starts its children
    monkeypatch.setenv("PORT", "8123")
    children = [start_moto(), start_redis()]
    try:
        for child in children:
            # Then each runs in its own process group, without the API's PORT
            assert running(child.pid)
            assert os.getpgid(child.pid) == child.pid
            environ = Path(f"/proc/{child.pid}/environ").read_bytes().split(b"\0")
            assert not any(entry.startswith(b"PORT=") for entry in environ)
    finally:
        for child in children:
            child.stop()
            child.stop()  # a second stop (atexit after the runtime's own) is harmless
    # And after stop no process is left
    for child in children:
        assert not running(child.pid)
        assert not child.alive()


@needs_redis
def test_child_dies_with_a_killed_parent(tmp_path: Path) -> None:
    # Given a process that started redis-server and then is SIGKILLed (no atexit, no cleanup)
    script = (
        "import sys, time; from pathlib import Path; from functions.local.procs import start_redis;"
        "print(start_redis(log_path=Path(sys.argv[1])).pid, flush=True); time.sleep(60)"
    )
    argv = [sys.executable, "-c", script, str(tmp_path / "redis.log")]
    parent = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert running(child_pid)
        parent.kill()
        parent.wait()
        # Then the kernel takes redis-server down with it
        eventually(lambda: not running(child_pid))
    finally:
        parent.kill()


def test_redis_child_answers_and_writes_nothing_to_disk(redis_server: Child) -> None:
    client = redis.Redis.from_url(redis_server.url)
    assert client.ping()
    client.set("k", "v")
    assert client.get("k") == b"v"
    assert client.config_get("save") == {"save": ""}
    assert client.config_get("appendonly") == {"appendonly": "no"}
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


# -- resources ----------------------------------------------------------------------------------------------------


def test_ensure_resources_is_idempotent_and_converges(
    s3: S3Client, sqs: SQSClient, settings: Settings, queues: LocalResources
) -> None:
    # When called again with the same settings: same queues, and no second s3:TestEvent (notification untouched)
    again = ensure_resources(s3, sqs, settings, visibility_overrides=FAST)
    assert again == queues
    assert message_count(sqs, queues.url(names.INGEST_QUEUE)) == 0
    assert message_count(sqs, queues.url(names.STATUS_QUEUE)) == 0
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]].count(names.DATASETS_BUCKET) == 1

    for queue in names.QUEUES:
        attrs = sqs.get_queue_attributes(QueueUrl=queues.url(queue), AttributeNames=["All"])["Attributes"]
        assert attrs["VisibilityTimeout"] == str(SHORT_VISIBILITY)
        assert json.loads(attrs["RedrivePolicy"]) == {
            "deadLetterTargetArn": queues.dlq_arns[queue],
            "maxReceiveCount": names.MAX_RECEIVE_COUNT,
        }
        assert queues.dlq_arns[queue].endswith(":" + names.dlq_name(queue))
    for queue in (names.INGEST_QUEUE, names.STATUS_QUEUE):
        policy = json.loads(
            sqs.get_queue_attributes(QueueUrl=queues.url(queue), AttributeNames=["Policy"])["Attributes"]["Policy"]
        )
        assert policy["Statement"][0]["Principal"] == {"Service": "s3.amazonaws.com"}
        assert policy["Statement"][0]["Action"] == "sqs:SendMessage"

    # When called without overrides: existing queues take the production visibility timeouts
    try:
        defaults = ensure_resources(s3, sqs, settings)
        assert defaults == queues
        for queue in names.QUEUES:
            response = sqs.get_queue_attributes(QueueUrl=queues.url(queue), AttributeNames=["VisibilityTimeout"])
            assert response["Attributes"]["VisibilityTimeout"] == str(names.visibility_timeout(queue))
    finally:
        ensure_resources(s3, sqs, settings, visibility_overrides=FAST)
    assert queues.settings_overrides()["ingest_queue_url"] == queues.url(names.INGEST_QUEUE)


def test_one_bucket_routes_ingest_prefixes_and_artifacts_after_a_test_event(
    s3: S3Client, sqs: SQSClient, settings: Settings, queues: LocalResources
) -> None:
    bucket = "local-one-bucket"
    try:
        # Given a fresh bucket wired up: S3 announces each notification with a TestEvent
        ensure_resources(s3, sqs, Settings(_env_file=None, aws_bucket_name=bucket), visibility_overrides=FAST)
        # When objects land under other prefixes (a lookalike without "/" included), then under routed ones
        for key in ("other/acme/x.jsonl", "incomingacme/x.jsonl", "acme/incoming/x.jsonl", "artifactsx/y.json"):
            s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
        s3.put_object(Bucket=bucket, Key="incoming/acme/x.jsonl", Body=b'{"messages": []}\n')
        s3.put_object(Bucket=bucket, Key="incoming/acme/my file+1.jsonl", Body=b"{}")
        s3.put_object(Bucket=bucket, Key="artifacts/acme/ftjob-1/progress.json", Body=b"{}")

        # Then each queue holds the TestEvent and exactly the routed objects, keys decoded
        assert take_events(sqs, queues.url(names.INGEST_QUEUE)) == [
            ("s3:TestEvent", bucket, ""),
            ("ObjectCreated:Put", bucket, "incoming/acme/x.jsonl"),
            ("ObjectCreated:Put", bucket, "incoming/acme/my file+1.jsonl"),
        ]
        assert take_events(sqs, queues.url(names.STATUS_QUEUE)) == [
            ("s3:TestEvent", bucket, ""),
            ("ObjectCreated:Put", bucket, "artifacts/acme/ftjob-1/progress.json"),
        ]
        assert message_count(sqs, queues.url(names.DISPATCH_QUEUE)) == 0
    finally:
        ensure_resources(s3, sqs, settings, visibility_overrides=FAST)  # the queue policies name the module's bucket


def test_two_buckets_route_each_prefix_only_from_its_own_bucket(
    s3: S3Client, sqs: SQSClient, settings: Settings, queues: LocalResources
) -> None:
    datasets, artifacts = "local-datasets", "local-artifacts"
    two = Settings(_env_file=None, aws_bucket_name=datasets, artifacts_bucket_name=artifacts)
    try:
        ensure_resources(s3, sqs, two, visibility_overrides=FAST)
        take_events(sqs, queues.url(names.INGEST_QUEUE))
        take_events(sqs, queues.url(names.STATUS_QUEUE))
        s3.put_object(Bucket=datasets, Key="artifacts/acme/ftjob-1/result.json", Body=b"{}")
        s3.put_object(Bucket=artifacts, Key="datasets/acme/file-1/train.jsonl", Body=b"{}")
        s3.put_object(Bucket=datasets, Key="datasets/acme/file-1/train.jsonl", Body=b"{}")
        s3.put_object(Bucket=datasets, Key="uploads/acme/upload-1/part-1", Body=b"{}")
        s3.put_object(Bucket=artifacts, Key="artifacts/acme/ftjob-1/result.json", Body=b"{}")

        assert take_events(sqs, queues.url(names.INGEST_QUEUE)) == [
            ("ObjectCreated:Put", datasets, "datasets/acme/file-1/train.jsonl"),
            ("ObjectCreated:Put", datasets, "uploads/acme/upload-1/part-1"),
        ]
        assert take_events(sqs, queues.url(names.STATUS_QUEUE)) == [
            ("ObjectCreated:Put", artifacts, "artifacts/acme/ftjob-1/result.json"),
        ]
    finally:
        ensure_resources(s3, sqs, settings, visibility_overrides=FAST)


# -- SQS poller ---------------------------------------------------------------------------------------------------


def test_poller_passes_lambda_shaped_event_and_context(sqs: SQSClient, queues: LocalResources) -> None:
    url = queues.url(names.DISPATCH_QUEUE)
    calls: list[tuple[dict[str, Any], LambdaContext]] = []
    poller = SqsPoller(sqs, url, lambda event, context: calls.append((event, context)), function_name="dispatch")
    sent = sqs.send_message(
        QueueUrl=url,
        MessageBody='{"job_id": "ftjob-1"}',
        MessageAttributes={
            "tenant": {"DataType": "String", "StringValue": "acme"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )

    assert poller.drain(timeout=10) == 1

    [(event, context)] = calls
    [record] = event["Records"]
    assert set(record) == {
        "messageId", "receiptHandle", "body", "attributes", "messageAttributes",
        "md5OfBody", "eventSource", "eventSourceARN", "awsRegion",
    }  # fmt: skip
    assert record["messageId"] == sent["MessageId"]
    assert record["body"] == '{"job_id": "ftjob-1"}'
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queues.arn(names.DISPATCH_QUEUE)
    assert record["awsRegion"] == REGION
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    for name in ("SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"):
        assert record["attributes"][name]
    assert record["messageAttributes"] == {
        "tenant": {"stringValue": "acme", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
        "blob": {
            "binaryValue": base64.b64encode(b"\x00\x01").decode(),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    # Powertools reads the same event the way it reads Lambda's
    parsed = next(iter(SQSEvent(event).records))
    assert parsed.queue_url.endswith("/" + names.DISPATCH_QUEUE)
    tenant = parsed.message_attributes["tenant"]
    assert tenant is not None
    assert tenant.string_value == "acme"
    assert parsed.attributes.approximate_receive_count == "1"

    assert context.function_name == "dispatch"
    assert context.invoked_function_arn.startswith(f"arn:aws:lambda:{REGION}:")
    assert context.invoked_function_arn.endswith(":function:dispatch")
    assert context.log_group_name == "/aws/lambda/dispatch"
    assert context.aws_request_id
    timeout_ms = names.WORKER_TIMEOUT_SECONDS[names.DISPATCH_QUEUE] * 1000
    assert 0 < context.get_remaining_time_in_millis() <= timeout_ms
    assert message_count(sqs, url) == 0  # a batch that succeeded is deleted


def test_partial_failure_deletes_only_the_successful_messages(sqs: SQSClient, queues: LocalResources) -> None:
    # Given a Powertools BatchProcessor handler that fails the record whose body is "bad"
    url = queues.url(names.DISPATCH_QUEUE)
    processor = BatchProcessor(event_type=EventType.SQS)
    batches: list[list[tuple[str, str]]] = []

    def record_handler(record: SQSRecord) -> None:
        if record.body == "bad":
            raise ValueError("bad record")

    def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        batches.append([(r["body"], r["attributes"]["ApproximateReceiveCount"]) for r in event["Records"]])
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    poller = SqsPoller(sqs, url, handler)
    send(sqs, url, "good-1", "bad", "good-2")

    # When the first batch is handled: only "bad" is left (in flight or visible again)
    poll_until(poller, lambda: sum(len(b) for b in batches) >= 3)
    assert sorted(body for batch in batches for body, _ in batch) == ["bad", "good-1", "good-2"]
    assert message_count(sqs, url) == 1

    # Then "bad" alone comes back; every record failing makes BatchProcessor raise, so it stays again
    poll_until(poller, lambda: len(batches) >= 3 and len(batches[-1]) == 1 and batches[-1][0][1] == "3")
    assert all(batch == [("bad", str(n))] for n, batch in enumerate(batches[-2:], start=2))
    assert message_count(sqs, url) == 1


@pytest.mark.slow
def test_poison_message_lands_in_the_dlq_after_max_receives(sqs: SQSClient, queues: LocalResources) -> None:
    url, dlq = queues.url(names.DISPATCH_QUEUE), queues.dlq_urls[names.DISPATCH_QUEUE]
    receives: list[tuple[str, str]] = []

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        receives.extend((r["body"], r["attributes"]["ApproximateReceiveCount"]) for r in event["Records"])
        return {
            "batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "poison"]
        }

    poller = SqsPoller(sqs, url, handler)
    send(sqs, url, "poison", "fine")

    poll_until(poller, lambda: message_count(sqs, dlq) == 1, timeout=30)

    assert [count for body, count in receives if body == "poison"] == [
        str(n) for n in range(1, names.MAX_RECEIVE_COUNT + 1)
    ]
    assert [body for body, _ in receives].count("fine") == 1
    [dead] = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=0, VisibilityTimeout=0)["Messages"]  # a peek
    assert dead["Body"] == "poison"
    assert message_count(sqs, url) == 0


def test_handler_exception_redelivers_the_whole_batch(sqs: SQSClient, queues: LocalResources) -> None:
    url = queues.url(names.DISPATCH_QUEUE)
    calls: list[dict[str, str]] = []

    def handler(event: dict[str, Any], context: LambdaContext) -> None:
        calls.append({r["messageId"]: r["attributes"]["ApproximateReceiveCount"] for r in event["Records"]})
        if len(calls) == 1:
            raise RuntimeError("worker crashed")

    poller = SqsPoller(sqs, url, handler)
    sent = send(sqs, url, "a", "b")

    poll_until(poller, lambda: len(calls) >= 2)

    assert calls[0] == dict.fromkeys(sent, "1")
    assert calls[1] == dict.fromkeys(sent, "2")
    assert message_count(sqs, url) == 0


@pytest.mark.parametrize(
    "response",
    [
        {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"id": "wrong-key"}]},
        "not an object",
    ],
)
def test_invalid_batch_response_fails_the_whole_batch(sqs: SQSClient, queues: LocalResources, response: Any) -> None:
    url = queues.url(names.DISPATCH_QUEUE)
    poller = SqsPoller(sqs, url, lambda event, context: response)
    send(sqs, url, "a", "b")

    assert poller.run_once() == 2

    assert message_count(sqs, url) == 2  # both left for redelivery


def test_background_poller_handles_messages_and_stops(sqs: SQSClient, queues: LocalResources) -> None:
    url = queues.url(names.DISPATCH_QUEUE)
    handled = threading.Event()
    poller = SqsPoller(sqs, url, lambda event, context: handled.set())
    poller.start()
    try:
        send(sqs, url, "x")
        assert handled.wait(10)
    finally:
        poller.stop()
    assert not poller.running
    eventually(lambda: message_count(sqs, url) == 0, timeout=5)


def test_drain_processes_batches_until_nothing_is_visible(sqs: SQSClient, queues: LocalResources) -> None:
    url = queues.url(names.DISPATCH_QUEUE)
    sizes: list[int] = []
    poller = SqsPoller(sqs, url, lambda event, context: sizes.append(len(event["Records"])))
    send(sqs, url, *(f"m{i}" for i in range(15)))

    assert poller.drain(timeout=15) == 15

    assert sum(sizes) == 15
    assert max(sizes) <= names.SQS_BATCH_SIZE
    assert message_count(sqs, url) == 0


def test_drain_waits_for_the_batch_the_background_poller_holds(sqs: SQSClient, queues: LocalResources) -> None:
    # Given a running poller whose handler is slow, holding a batch that is no longer visible on the queue
    url = queues.url(names.DISPATCH_QUEUE)
    entered, handled = threading.Event(), threading.Event()

    def handler(event: dict[str, Any], context: LambdaContext) -> None:
        entered.set()
        time.sleep(0.5)  # the window in which a drain that only looked at the queue would return early
        handled.set()

    poller = SqsPoller(sqs, url, handler)
    poller.start()
    try:
        send(sqs, url, "slow")
        assert entered.wait(10)
        # When drained, then the batch has been handled by the time drain returns
        poller.drain(timeout=10)
        assert handled.is_set()
    finally:
        poller.stop()
    assert message_count(sqs, url) == 0
