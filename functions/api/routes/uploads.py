"""OpenAI Uploads (`client.uploads.*`), each Upload also carrying a presigned S3 POST for direct uploads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from functions.api.deps import BlobsDep, CurrentTenant, SettingsDep, StoreDep
from functions.api.schemas import OPENAI_ERRORS, UploadComplete, UploadCreate, UploadOut, UploadPartOut
from functions.datasets import uploads

router = APIRouter(prefix="/v1/uploads", tags=["uploads"], responses=OPENAI_ERRORS)


@router.post("", response_model=UploadOut)
def create_upload(
    body: UploadCreate, tenant: CurrentTenant, store: StoreDep, blobs: BlobsDep, settings: SettingsDep
) -> UploadOut:
    upload, post = uploads.create(
        store, blobs, settings, tenant.client_code, body.filename, body.purpose, body.bytes, body.mime_type
    )
    return UploadOut.of(upload, post=post)


@router.get("/{upload_id}", response_model=UploadOut)
def retrieve_upload(upload_id: str, tenant: CurrentTenant, store: StoreDep) -> UploadOut:
    upload = uploads.get(store, tenant.client_code, upload_id)
    return UploadOut.of(upload, store.datasets.get(upload.file_id, tenant.client_code))


@router.post("/{upload_id}/parts", response_model=UploadPartOut)
def add_upload_part(
    upload_id: str,
    tenant: CurrentTenant,
    store: StoreDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    data: Annotated[UploadFile, File(description="a chunk of the file, up to 64 MB")],
) -> UploadPartOut:
    part = uploads.add_part(store, blobs, settings, tenant.client_code, upload_id, data.file, data.size or 0)
    return UploadPartOut(id=part["id"], created_at=part["created_at"], upload_id=upload_id)


@router.post("/{upload_id}/complete", response_model=UploadOut)
def complete_upload(
    upload_id: str, body: UploadComplete, tenant: CurrentTenant, store: StoreDep, blobs: BlobsDep, settings: SettingsDep
) -> UploadOut:
    # Joins the parts inside S3: parts of 5 MiB or more are never read here (functions/datasets/uploads.py).
    upload, dataset = uploads.complete(store, blobs, settings, tenant.client_code, upload_id, body.part_ids, body.md5)
    return UploadOut.of(upload, dataset)


@router.post("/{upload_id}/cancel", response_model=UploadOut)
def cancel_upload(upload_id: str, tenant: CurrentTenant, store: StoreDep, blobs: BlobsDep) -> UploadOut:
    return UploadOut.of(uploads.cancel(store, blobs, tenant.client_code, upload_id))
