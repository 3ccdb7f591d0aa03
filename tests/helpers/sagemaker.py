"""Settings for the SageMaker backend tests (training and serving): one region, one execution role."""

from __future__ import annotations

from typing import Any

from functions.core.settings import Settings

ROLE = "arn:aws:iam::123456789012:role/MiniStudio-dev-Compute-ExecutionRole"


def sagemaker_settings(**fields: Any) -> Settings:
    """Settings that pick the SageMaker backend in us-east-1 with ROLE, plus `fields`."""
    base: dict[str, Any] = {
        "compute_backend": "sagemaker",
        "aws_region": "us-east-1",
        "sagemaker_execution_role_arn": ROLE,
    }
    return Settings(**{**base, **fields})
