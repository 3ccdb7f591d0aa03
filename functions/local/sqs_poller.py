"""Lambda's SQS event source mapping, emulated for one queue and one handler.

What it reproduces, because the worker handlers depend on it:
- the event and context shapes Lambda passes (Powertools' `SQSRecord` parses the event as-is);
- `ReportBatchItemFailures`: only the reported items stay on the queue; an unknown or empty item id, a response
  that is not a JSON object, or an exception (Powertools' `BatchProcessingError` when every record failed)
  fails the whole batch;
- retries through the visibility timeout and the queue's own redrive policy: the poller never deletes a failed
  message itself, so SQS counts its receives and moves it to the DLQ after maxReceiveCount, as in AWS.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from functions.core import names
from functions.local.lambda_context import DEFAULT_ACCOUNT_ID, LambdaContext, new_context

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import (
        DeleteMessageBatchRequestEntryTypeDef,
        MessageAttributeValueOutputTypeDef,
        MessageTypeDef,
    )

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], LambdaContext], Any]

_DEFAULT_TIMEOUT_SECONDS = 60
_ERROR_BACKOFF_SECONDS = 1.0  # after a failed receive (moto restarting, network blip) before trying again


class SqsPoller:
    def __init__(
        self,
        sqs_client: SQSClient,
        queue_url: str,
        handler: Handler,
        *,
        function_name: str | None = None,
        batch_size: int = names.SQS_BATCH_SIZE,
        wait_seconds: int = 1,
        timeout_seconds: float | None = None,
        memory_mb: int = 512,
        queue_arn: str | None = None,
    ) -> None:
        if not 1 <= batch_size <= 10:  # one ReceiveMessage returns at most 10
            raise ValueError(f"batch_size must be 1..10, got {batch_size}")
        if not 0 <= wait_seconds <= 20:
            raise ValueError(f"wait_seconds must be 0..20, got {wait_seconds}")
        self.sqs = sqs_client
        self.queue_url = queue_url
        self.handler = handler
        self.queue_name = queue_url.rstrip("/").rsplit("/", 1)[-1]
        self.function_name = function_name or f"{self.queue_name}-worker"
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds
        self.timeout_seconds = (
            timeout_seconds
            if timeout_seconds is not None
            else names.WORKER_TIMEOUT_SECONDS.get(self.queue_name, _DEFAULT_TIMEOUT_SECONDS)
        )
        self.memory_mb = memory_mb
        self.queue_arn = queue_arn or self._attributes(["QueueArn"])["QueueArn"]
        arn_parts = self.queue_arn.split(":")
        self.region = arn_parts[3] if len(arn_parts) > 4 else (sqs_client.meta.region_name or "us-east-1")
        self.account_id = arn_parts[4] if len(arn_parts) > 4 else DEFAULT_ACCOUNT_ID
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Receives started and finished (all threads), so drain() can wait for a batch the background thread holds.
        self._progress = threading.Condition()
        self._started = 0
        self._finished = 0

    # -- one batch ---------------------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Receive one batch, invoke the handler, delete what succeeded; returns how many messages came."""
        with self._progress:
            self._started += 1
        try:
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.batch_size,
                WaitTimeSeconds=self.wait_seconds,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if messages:
                self._invoke(messages)
            return len(messages)
        finally:
            with self._progress:
                self._finished += 1
                self._progress.notify_all()

    def _invoke(self, messages: list[MessageTypeDef]) -> None:
        event = {"Records": [self._record(message) for message in messages]}
        context = new_context(
            self.function_name,
            self.timeout_seconds,
            region=self.region,
            account_id=self.account_id,
            memory_mb=self.memory_mb,
        )
        try:
            result = self.handler(event, context)
            # Lambda serializes the response; what cannot cross as JSON is a failed invocation there too.
            result = json.loads(json.dumps(result))
        except Exception:
            log.exception("%s failed on a batch of %d; all will be retried", self.function_name, len(messages))
            return
        finally:
            if context.get_remaining_time_in_millis() == 0:
                # Lambda would have killed this invocation and retried the whole batch; this runtime cannot.
                log.warning("%s ran past its %.0fs timeout", self.function_name, self.timeout_seconds)
        failed = _failed_ids(result, {message["MessageId"] for message in messages})
        if failed is None:
            log.warning("%s returned %r: Lambda fails the whole batch of %d", self.function_name, result, len(messages))
            return
        if failed:
            log.info("%s reported %d of %d failed", self.function_name, len(failed), len(messages))
        self._delete([message for message in messages if message["MessageId"] not in failed])

    def _record(self, message: MessageTypeDef) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": {
                name: _lambda_message_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        }

    def _delete(self, messages: list[MessageTypeDef]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
            ]
            response = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            for failure in response.get("Failed", []):
                # The message comes back after its visibility timeout and is processed again (at-least-once).
                log.warning("could not delete a message from %s: %s", self.queue_name, failure.get("Message"))

    # -- background loop -----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"sqs-poller-{self.queue_name}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the background loop to end after the batch in hand, without waiting (stop several pollers at once)."""
        self._stop.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the batch in hand and wait for it (by default one long poll plus the function timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.wait_seconds + self.timeout_seconds)
            if self._thread.is_alive():
                log.warning("poller for %s still busy after stop()", self.queue_name)
            else:
                self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("polling %s failed", self.queue_name)
                self._stop.wait(_ERROR_BACKOFF_SECONDS)

    def drain(self, timeout: float = 30.0) -> int:
        """Process batches in this thread until the queue has no visible message; returns messages it processed.

        A batch the background thread (if started) has received is invisible but not yet handled: drain waits for
        it too, so whatever was queued has been handled when this returns. Messages that failed and wait out their
        visibility timeout do not hold it up. Raises TimeoutError when `timeout` runs out first.
        """
        deadline = time.monotonic() + timeout
        processed = 0
        while True:
            if self._visible() > 0:
                self._check(deadline, timeout)
                processed += self.run_once()
                continue
            with self._progress:
                # At most one other receive runs at a time (the background thread's), so once as many have
                # finished as had started, the batch it held is handled.
                in_hand = self._started

                def handled(target: int = in_hand) -> bool:
                    return self._finished >= target

                done = self._progress.wait_for(handled, max(0.0, deadline - time.monotonic()))
                if not done:
                    self._check(deadline, timeout)
            if self._visible() == 0:
                return processed

    def _visible(self) -> int:
        return int(self._attributes(["ApproximateNumberOfMessages"])["ApproximateNumberOfMessages"])

    def _check(self, deadline: float, timeout: float) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{self.queue_name} was not drained within {timeout:.0f}s")

    def _attributes(self, attribute_names: list[QueueAttributeNameType]) -> dict[str, str]:
        response = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=attribute_names)
        return {str(name): value for name, value in response.get("Attributes", {}).items()}


def _failed_ids(result: Any, batch_ids: set[str]) -> set[str] | None:
    """Ids to keep on the queue, or None when Lambda would count the response as failing the whole batch."""
    if result is None:
        return set()
    if not isinstance(result, dict):
        return None
    items = result.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return None
    failed: set[str] = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in batch_ids:
            return None
        failed.add(identifier)
    return failed


def _lambda_message_attribute(value: MessageAttributeValueOutputTypeDef) -> dict[str, Any]:
    """SQS API attribute → the camelCase shape Lambda puts in an event (binary values base64-encoded)."""
    shaped: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [base64.b64encode(item).decode() for item in value.get("BinaryListValues", [])],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        shaped["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        shaped["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return shaped
