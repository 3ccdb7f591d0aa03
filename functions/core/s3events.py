"""S3 event notifications as SQS delivers them: URL-encoded keys (moto encodes '/' too), and an `s3:TestEvent`
when a notification is configured."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote_plus


@dataclass(frozen=True)
class ObjectEvent:
    bucket: str
    key: str
    size: int
    etag: str
    sequencer: str


def parse_notification(body: str) -> list[ObjectEvent]:
    """ObjectCreated records of an S3 notification (Powertools' S3Event reads them); [] for a test event. Anything
    else is a poison message."""
    from aws_lambda_powertools.utilities.data_classes import S3Event  # the workers' BatchProcessor has loaded it

    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError("S3 notification body is not a JSON object")
    if message.get("Event") == "s3:TestEvent":
        return []
    if not isinstance(message.get("Records"), list):
        raise ValueError("S3 notification body has no Records list")
    events = []
    for record in S3Event(message).records:
        if not record.event_name.startswith("ObjectCreated:"):
            continue
        obj = record.s3.get_object  # its size and sequencer properties raise on events that lack them (tests, moto)
        events.append(
            ObjectEvent(
                bucket=record.s3.bucket.name,
                key=unquote_plus(obj.key),  # S3 URL-encodes keys in events (moto '/' too): always decode
                size=int(obj.get("size") or 0),
                etag=obj.etag,
                sequencer=str(obj.get("sequencer") or ""),
            )
        )
    return events
