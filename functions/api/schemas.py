"""Response and request bodies of the control plane's API. OpenAI operations follow OpenAI's schemas exactly;
Mini Studio's own resources follow the same conventions (object, id, created_at in seconds, list envelopes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from functions.core.models import Dataset, Upload
from functions.datasets.filenames import display_filename
from functions.datasets.intake import openai_status
from functions.store.paging import Page


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Item = TypeVar("Item", bound=BaseModel)  # an object with an `id`


class ListPage(BaseModel, Generic[Item]):
    """Every list the API answers: OpenAI's envelope, `{object: "list", data, has_more, first_id, last_id}`.
    Use it parametrized (`ListPage[FileOut].of(...)`): the item type is what gets documented and serialized."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)  # every field is always sent

    object: Literal["list"] = "list"
    data: list[Item]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None

    @classmethod
    def of(cls, data: list[Item], has_more: bool = False, *, empty_id: str | None = None) -> ListPage[Item]:
        """`empty_id`: first_id and last_id of an empty page (OpenAI's file list wants strings there: "")."""
        if not data:
            return cls(data=data, has_more=has_more, first_id=empty_id, last_id=empty_id)
        first, last = data[0], data[-1]
        return cls(data=data, has_more=has_more, first_id=first.id, last_id=last.id)  # type: ignore[attr-defined]

    @classmethod
    def from_page(cls, page: Page[Any], shown: Callable[[Any], Item], *, empty_id: str | None = None) -> ListPage[Item]:
        """A store page, each record `shown` as the API's item."""
        return cls.of([shown(record) for record in page.data], page.has_more, empty_id=empty_id)


# --- errors -------------------------------------------------------------------------------------------------
class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None
    request_id: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorBody


class SeedError(BaseModel):
    ok: Literal[False] = False
    error: str
    request_id: str | None = None


# --- root -----------------------------------------------------------------------------------------------------
class Welcome(BaseModel):
    ok: bool = True
    message: str
    docs: str


class Health(BaseModel):
    ok: bool
    status: Literal["healthy", "degraded", "unhealthy"]
    components: dict[str, str]


# --- tenants --------------------------------------------------------------------------------------------------
class TenantCreate(Strict):
    client_code: str = Field(description="2-32 of a-z, 0-9 and '-', starting with a letter")
    config: dict[str, Any] = {}  # copied per instance; default_factory=dict costs import time (inspect)


class TenantUpdate(Strict):
    config: dict[str, Any]


class TenantOut(BaseModel):
    object: Literal["tenant"] = "tenant"
    id: str
    client_code: str
    status: str
    created_at: int
    config: dict[str, Any]


class ApiKeyCreate(Strict):
    name: str | None = Field(default=None, max_length=100)


class ApiKeyOut(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: str
    client_code: str
    name: str | None
    prefix: str
    created_at: int
    revoked_at: int | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret, shown this once only")


# --- files ----------------------------------------------------------------------------------------------------
class ValidationError_(BaseModel):
    line: int | None
    reason: str
    field: str | None = None


class Validation(BaseModel):
    status: str
    format: str | None = None
    examples: int = 0
    lines: int = 0
    bytes: int = 0
    token_estimate: int = 0
    messages: int = 0
    error_count: int = 0
    errors: list[ValidationError_] = []


class FileOut(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: Literal["fine-tune", "fine-tune-results"]
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None = Field(default=None, exclude_if=lambda v: v is None)
    validation: Validation

    @classmethod
    def of(cls, d: Dataset) -> FileOut:
        report = d.validation or {}
        errors = report.get("errors") or []
        details = errors[0]["reason"] if errors else None
        validation = Validation(
            status=d.status.value, **{k: v for k, v in report.items() if k in Validation.model_fields}
        )
        return cls(
            id=d.id,
            bytes=d.bytes,
            created_at=d.created_at,
            filename=display_filename(d.filename),  # records stored before names were cleaned show clean too
            purpose="fine-tune-results" if d.purpose == "fine-tune-results" else "fine-tune",
            status=openai_status(d.status),
            status_details=details,
            validation=validation,
        )


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class SeedUploadOut(BaseModel):
    ok: bool = True
    dataset_id: str
    dataset_dfs: str | None
    dataset_s3: str
    size_bytes: int
    status: str


# --- uploads --------------------------------------------------------------------------------------------------
class UploadCreate(Strict):
    filename: str = Field(min_length=1, max_length=255)
    purpose: str
    bytes: int
    mime_type: str


class UploadComplete(Strict):
    part_ids: list[str] = []
    md5: str | None = None


class PresignedPost(BaseModel):
    url: str
    fields: dict[str, str]
    key: str
    max_bytes: int
    expires_at: int


class UploadOut(BaseModel):
    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["pending", "completed", "cancelled", "expired"]
    expires_at: int
    file: FileOut | None = None
    presigned_post: PresignedPost | None = Field(default=None, exclude_if=lambda v: v is None)

    @classmethod
    def of(cls, u: Upload, file: Dataset | None = None, post: dict[str, Any] | None = None) -> UploadOut:
        presigned = None
        if post is not None:
            presigned = PresignedPost(
                url=post["url"], fields=post["fields"], key=u.key, max_bytes=u.bytes, expires_at=u.expires_at
            )
        return cls(
            id=u.id,
            bytes=u.bytes,
            created_at=u.created_at,
            filename=display_filename(u.filename),
            purpose=u.purpose,
            status=u.status.value,
            expires_at=u.expires_at,
            file=FileOut.of(file) if file else None,
            presigned_post=presigned,
        )


class UploadPartOut(BaseModel):
    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str


ERROR_MODELS: tuple[type[BaseModel], ...] = (OpenAIError, SeedError)


def _errors(model: type[BaseModel], *codes: int) -> dict[int | str, dict[str, Any]]:
    # A $ref, not {"model": ...}: FastAPI builds a validator per route per status for `model`, which cost ~40% of
    # the API's import time (bench/cold_start.py). app.openapi() adds these schemas to components instead.
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {code: {"description": "error", "content": {"application/json": {"schema": ref}}} for code in codes}


OPENAI_ERRORS = _errors(OpenAIError, 400, 401, 404, 409, 413, 415, 422, 429)
SEED_ERRORS = _errors(SeedError, 400, 401, 404, 413, 415, 422, 429)
PROXY_ERRORS = _errors(OpenAIError, 400, 401, 404, 409, 413, 415, 422, 429, 502, 503)
SEED_PROXY_ERRORS = _errors(SeedError, 400, 401, 404, 413, 415, 422, 429, 502, 503)
