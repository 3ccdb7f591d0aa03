"""OpenAI Files: `client.files.create/list/retrieve/delete/content` work against /v1."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse

from functions.api.deps import BlobsDep, CurrentTenant, SettingsDep, StoreDep
from functions.api.schemas import OPENAI_ERRORS, FileDeleted, FileList, FileOut
from functions.core.models import Dataset
from functions.datasets import registry
from functions.datasets.filenames import FALLBACK_NAME

router = APIRouter(prefix="/v1/files", tags=["files"], responses=OPENAI_ERRORS)


@router.post("", response_model=FileOut)
def create_file(
    tenant: CurrentTenant,
    store: StoreDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="JSONL training data")],
    purpose: Annotated[str, Form()],
) -> FileOut:
    dataset = registry.register_stream(
        store,
        blobs,
        settings,
        tenant.client_code,
        file.filename or FALLBACK_NAME,
        file.file,
        file.size or 0,
        purpose,
        source="api",
    )
    return FileOut.of(dataset)


@router.get("", response_model=FileList)
def list_files(
    tenant: CurrentTenant,
    store: StoreDep,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    after: str | None = None,
    order: Literal["asc", "desc"] = "desc",
) -> FileList:
    page = store.datasets.page(tenant.client_code, purpose, after, limit, order)
    data = [FileOut.of(Dataset.model_validate(d)) for d in page.items]
    return FileList(
        data=data, first_id=data[0].id if data else "", last_id=data[-1].id if data else "", has_more=page.has_more
    )


@router.get("/{file_id}", response_model=FileOut)
def retrieve_file(file_id: str, tenant: CurrentTenant, store: StoreDep) -> FileOut:
    return FileOut.of(registry.get_dataset(store, tenant.client_code, file_id))


@router.delete("/{file_id}", response_model=FileDeleted)
def delete_file(file_id: str, tenant: CurrentTenant, store: StoreDep, blobs: BlobsDep) -> FileDeleted:
    dataset = registry.delete_dataset(store, blobs, tenant.client_code, file_id)
    return FileDeleted(id=dataset.id, deleted=True)


@router.get(
    "/{file_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"}},
)
def file_content(file_id: str, tenant: CurrentTenant, store: StoreDep, blobs: BlobsDep) -> StreamingResponse:
    dataset = registry.get_dataset(store, tenant.client_code, file_id)
    return StreamingResponse(
        blobs.iter_chunks(dataset.bucket, dataset.s3_key),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{registry.safe_filename(dataset.filename)}"'},
    )
