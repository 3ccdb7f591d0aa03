"""Domain records as stored in MongoDB (`_id` is the record's public id) and the statuses they move through."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def now() -> int:
    return int(time.time())


class DatasetStatus(StrEnum):
    uploaded = "uploaded"
    validating = "validating"
    validated = "validated"
    invalid = "invalid"


class UploadStatus(StrEnum):
    pending = "pending"
    completed = "completed"
    cancelled = "cancelled"
    expired = "expired"


class Record(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str = Field(alias="_id")

    def doc(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


class Tenant(Record):
    """`_id` is the client_code."""

    created_at: int = Field(default_factory=now)
    status: str = "active"
    config: dict[str, Any] = Field(default_factory=dict)

    @property
    def client_code(self) -> str:
        return self.id

    @property
    def rate_limit_per_minute(self) -> int | None:
        value = self.config.get("rate_limit_per_minute")
        return int(value) if value is not None else None


class ApiKey(Record):
    client_code: str
    key_hash: str
    prefix: str
    name: str | None = None
    created_at: int = Field(default_factory=now)
    revoked_at: int | None = None


class Dataset(Record):
    """A training file. OpenAI calls it a File; seed 001 calls it a dataset (collection fine_tuning_datasets)."""

    client_code: str
    filename: str
    purpose: str = "fine-tune"
    bucket: str
    s3_key: str
    bytes: int = 0
    dfs_path: str | None = None
    source: str  # api | seed | upload | incoming
    status: DatasetStatus = DatasetStatus.uploaded
    created_at: int = Field(default_factory=now)
    seq: int = Field(default_factory=time.time_ns)  # creation order within a second, for pagination
    validated_at: int | None = None
    validation: dict[str, Any] | None = None


class Upload(Record):
    client_code: str
    filename: str
    purpose: str
    bytes: int
    mime_type: str
    bucket: str
    key: str  # where the presigned POST or the assembled parts land
    file_id: str  # the Dataset this upload becomes
    status: UploadStatus = UploadStatus.pending
    parts: list[dict[str, Any]] = Field(default_factory=list)
    created_at: int = Field(default_factory=now)
    seq: int = Field(default_factory=time.time_ns)
    expires_at: int
