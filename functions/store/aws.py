"""boto3 clients configured from settings (region, moto's endpoint locally); boto3 is imported on first use."""

from __future__ import annotations

from typing import Any

from functions.core.settings import Settings


def aws_client(service: str, settings: Settings, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    make: Any = boto3.client  # the stubs type each service by its literal name; this takes any
    return make(
        service,
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, **config),
    )
