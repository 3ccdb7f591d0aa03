"""Seed 001's dataset upload route, same path, field and 201 body."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from functions.api.deps import CallerDep
from functions.api.schemas import SEED_ERRORS, SeedUploadOut
from functions.datasets import intake
from functions.datasets.filenames import FALLBACK_NAME

router = APIRouter(prefix="/fine_tuning", tags=["fine_tuning"], responses=SEED_ERRORS)


@router.post("/upload-dataset/{client_code}", status_code=201)
def upload_dataset(
    client_code: str, caller: CallerDep, file: Annotated[UploadFile, File(description="JSONL chat dataset")]
) -> SeedUploadOut:
    dataset = intake.register_stream(
        caller.store,
        caller.blobs,
        caller.settings,
        caller.own(client_code),
        file.filename or FALLBACK_NAME,
        file.file,
        file.size or 0,
        "fine-tune",
        "seed",
    )
    return SeedUploadOut(
        dataset_id=dataset.id,
        dataset_dfs=dataset.dfs_path,
        dataset_s3=f"s3://{dataset.bucket}/{dataset.s3_key}",
        size_bytes=dataset.bytes,
        status=dataset.status.value,
    )
