"""OpenAI Uploads (`client.uploads.*`), each Upload also carrying a presigned S3 POST for direct uploads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from functions.api.deps import CallerDep
from functions.api.schemas import OPENAI_ERRORS, UploadComplete, UploadCreate, UploadOut, UploadPartOut
from functions.datasets import uploads

router = APIRouter(prefix="/v1/uploads", tags=["uploads"], responses=OPENAI_ERRORS)


@router.post("")
def create_upload(body: UploadCreate, caller: CallerDep) -> UploadOut:
    upload, post = uploads.create(
        caller.store,
        caller.blobs,
        caller.settings,
        caller.client_code,
        body.filename,
        body.purpose,
        body.bytes,
        body.mime_type,
    )
    return UploadOut.of(upload, post=post)


@router.get("/{upload_id}")
def retrieve_upload(upload_id: str, caller: CallerDep) -> UploadOut:
    return UploadOut.of(*uploads.retrieve(caller.store, caller.client_code, upload_id))


@router.post("/{upload_id}/parts")
def add_upload_part(
    upload_id: str,
    caller: CallerDep,
    data: Annotated[UploadFile, File(description="a chunk of the file, up to 64 MB")],
) -> UploadPartOut:
    part = uploads.add_part(
        caller.store, caller.blobs, caller.settings, caller.client_code, upload_id, data.file, data.size or 0
    )
    return UploadPartOut(id=part["id"], created_at=part["created_at"], upload_id=upload_id)


@router.post("/{upload_id}/complete")
def complete_upload(upload_id: str, body: UploadComplete, caller: CallerDep) -> UploadOut:
    # Joins the parts inside S3: parts of 5 MiB or more are never read here (functions/datasets/uploads.py).
    upload, dataset = uploads.complete(
        caller.store, caller.blobs, caller.settings, caller.client_code, upload_id, body.part_ids, body.md5
    )
    return UploadOut.of(upload, dataset)


@router.post("/{upload_id}/cancel")
def cancel_upload(upload_id: str, caller: CallerDep) -> UploadOut:
    return UploadOut.of(uploads.cancel(caller.store, caller.blobs, caller.client_code, upload_id))
