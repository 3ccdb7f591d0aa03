"""Secrets are read one way (functions/core/secrets.py): Powertools parameters, cached for SECRETS_MAX_AGE_SECONDS.
A rotated secret is seen once the cached copy is that old, and not before; settings and the admin key share it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.api.deps import _admin_from_secrets
from functions.core import secrets
from functions.core.settings import Settings


class Clock:
    """Powertools stamps cached values with datetime.now(): this moves its clock without sleeping."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        clock = self

        class MovedDatetime(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> MovedDatetime:
                return super().now(tz) + clock.offset

        from aws_lambda_powertools.utilities.parameters import base

        monkeypatch.setattr(base, "datetime", MovedDatetime)

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def sm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ENDPOINT_URL", "MONGODB_URL", "REDIS_URL", "ADMIN_API_KEY", "INFERENCE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    secrets.reset()  # providers made under another mock (or none) would call the real AWS
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")
    secrets.reset()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moved = Clock()
    moved.install(monkeypatch)
    return moved


def test_a_rotated_admin_key_is_seen_after_the_max_age_and_not_before(sm: Any, clock: Clock) -> None:
    # Given an admin key in Secrets Manager, read once through the settings' max age (60 s)
    arn = sm.create_secret(Name="admin", SecretString="key-v1")["ARN"]
    settings = Settings(_env_file=None, admin_api_key_secret_arn=arn, secrets_max_age_seconds=60)
    assert _admin_from_secrets(settings) == "key-v1"
    # When the secret is rotated
    sm.put_secret_value(SecretId=arn, SecretString="key-v2")
    # Then the cached key holds until the max age has passed, and the rotated one is read after it
    clock.advance(59)
    assert _admin_from_secrets(settings) == "key-v1"
    clock.advance(2)
    assert _admin_from_secrets(settings) == "key-v2"


def test_settings_secrets_come_through_the_same_cache(sm: Any, clock: Clock) -> None:
    # Given URLs in Secrets Manager and settings that name only their ARNs
    mongo = sm.create_secret(Name="mongo", SecretString="mongodb://db-1:27017")["ARN"]
    redis = sm.create_secret(Name="redis", SecretString="rediss://cache:6379/0")["ARN"]
    key = sm.create_secret(Name="inference", SecretString="server-key")["ARN"]
    arns = {"mongodb_url_secret_arn": mongo, "redis_url_secret_arn": redis, "inference_api_key_secret_arn": key}
    first = Settings(_env_file=None, secrets_max_age_seconds=300, **arns)
    assert (first.mongodb_url, first.redis_dsn) == ("mongodb://db-1:27017", "rediss://cache:6379/0")
    assert first.inference_api_key is not None and first.inference_api_key.get_secret_value() == "server-key"
    # When the MongoDB URL is rotated, settings rebuilt within the max age still get the cached URL, later the new
    sm.put_secret_value(SecretId=mongo, SecretString="mongodb://db-2:27017")
    assert Settings(_env_file=None, secrets_max_age_seconds=300, **arns).mongodb_url == "mongodb://db-1:27017"
    clock.advance(301)
    assert Settings(_env_file=None, secrets_max_age_seconds=300, **arns).mongodb_url == "mongodb://db-2:27017"


def test_max_age_zero_reads_every_time(sm: Any) -> None:
    arn = sm.create_secret(Name="admin", SecretString="key-v1")["ARN"]
    settings = Settings(_env_file=None, admin_api_key_secret_arn=arn, secrets_max_age_seconds=0)
    assert settings.secret(arn) == "key-v1"
    sm.put_secret_value(SecretId=arn, SecretString="key-v2")
    assert settings.secret(arn) == "key-v2"


def test_importing_settings_loads_neither_powertools_parameters_nor_boto3() -> None:
    import subprocess

    code = (
        "import sys; import functions.core.settings, functions.core.secrets;"
        "print(any(m.startswith(('boto3', 'aws_lambda_powertools.utilities.parameters')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
