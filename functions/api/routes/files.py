"""OpenAI Files: `client.files.create/list/retrieve/delete/content` work against /v1."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse

from functions.api.deps import CallerDep
from functions.api.schemas import OPENAI_ERRORS, FileDeleted, FileOut, ListPage
from functions.datasets import intake
from functions.datasets.filenames import FALLBACK_NAME

router = APIRouter(prefix="/v1/files", tags=["files"], responses=OPENAI_ERRORS)


@router.post("")
def create_file(
    caller: CallerDep,
    file: Annotated[UploadFile, File(description="JSONL training data")],
    purpose: Annotated[str, Form()],
) -> FileOut:
    dataset = intake.register_stream(
        caller.store,
        caller.blobs,
        caller.settings,
        caller.client_code,
        file.filename or FALLBACK_NAME,
        file.file,
        file.size or 0,
        purpose,
        source="api",
    )
    return FileOut.of(dataset)


@router.get("")
def list_files(
    caller: CallerDep,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    after: str | None = None,
    order: Literal["asc", "desc"] = "desc",
) -> ListPage[FileOut]:
    page = intake.list_files(caller.store, caller.client_code, purpose, after, limit, order)
    # OpenAI's ListFilesResponse requires first_id and last_id as strings, also for an empty list.
    return ListPage[FileOut].from_page(page, FileOut.of, empty_id="")


@router.get("/{file_id}")
def retrieve_file(file_id: str, caller: CallerDep) -> FileOut:
    return FileOut.of(intake.get_dataset(caller.store, caller.client_code, file_id))


@router.delete("/{file_id}")
def delete_file(file_id: str, caller: CallerDep) -> FileDeleted:
    dataset = intake.delete_dataset(caller.store, caller.blobs, caller.client_code, file_id)
    return FileDeleted(id=dataset.id, deleted=True)


@router.get(
    "/{file_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"}},
)
def file_content(file_id: str, caller: CallerDep) -> StreamingResponse:
    chunks, filename = intake.content(caller.store, caller.blobs, caller.client_code, file_id)
    disposition = f'attachment; filename="{filename}"'
    return StreamingResponse(
        chunks, media_type="application/octet-stream", headers={"Content-Disposition": disposition}
    )
