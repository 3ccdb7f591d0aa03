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
    """ObjectCreated records of an S3 notification; [] for a test event. Anything else is a poison message."""
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError("S3 notification body is not a JSON object")
    if message.get("Event") == "s3:TestEvent":
        return []
    events = []
    for record in message["Records"]:
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        s3 = record["s3"]
        obj = s3["object"]
        events.append(
            ObjectEvent(
                bucket=s3["bucket"]["name"],
                key=unquote_plus(obj["key"]),
                size=int(obj.get("size", 0)),
                etag=str(obj.get("eTag", "")),
                sequencer=str(obj.get("sequencer", "")),
            )
        )
    return events
