"""Settings keep the seed's variable names; ids are DNS-1123 friendly and keys hash one way."""

from __future__ import annotations

import re

import pytest

from functions.core import ids, names
from functions.core.settings import Settings

SEED_ENV = {
    "MONGODB_URL": "mongodb://db.internal:27017",
    "DATABASE_NAME": "mini_studio",
    "REDIS_HOST": "cache.internal",
    "REDIS_PORT": "6380",
    "REDIS_USERNAME": "app",
    "REDIS_PASSWORD": "p@ss/word",
    "AWS_BUCKET_NAME": "your-bucket",
    "AWS_REGION": "eu-west-1",
    "PORT": "9000",
    "DFS_BASE_PATH": "/tmp/mini-studio-dfs",
    "RAY_HEAD_ADDRESS": "http://ray-head:8265",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
}


def test_seed_variable_names_configure_the_control_plane(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "ARTIFACTS_BUCKET_NAME"):  # other tests' sessions may have set these
        monkeypatch.delenv(name, raising=False)
    for name, value in SEED_ENV.items():
        monkeypatch.setenv(name, value)
    s = Settings(_env_file=None)
    assert s.mongodb_url == SEED_ENV["MONGODB_URL"] and s.database_name == "mini_studio"
    assert s.redis_dsn == "redis://app:p%40ss%2Fword@cache.internal:6380/0"
    assert s.aws_bucket_name == "your-bucket" and s.artifacts_bucket == "your-bucket"
    assert (s.aws_region, s.port, s.dfs_base_path) == ("eu-west-1", 9000, "/tmp/mini-studio-dfs")
    assert s.ray_head_address == "http://ray-head:8265" and s.aws_endpoint_url == "http://127.0.0.1:5000"


def test_redis_url_wins_and_empty_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "ignored")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:7000/2")
    monkeypatch.setenv("MONGODB_URL", "")
    s = Settings(_env_file=None)
    assert s.redis_dsn == "redis://127.0.0.1:7000/2" and s.mongodb_url is None


def test_settings_read_a_dotenv_file(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"  # type: ignore[operator]
    env_file.write_text("DATABASE_NAME=from_dotenv\nRATE_LIMIT_PER_MINUTE=42\n")
    monkeypatch.delenv("DATABASE_NAME", raising=False)
    s = Settings(_env_file=str(env_file))
    assert s.database_name == "from_dotenv" and s.rate_limit_per_minute == 42


@pytest.mark.parametrize("code", ["ab", "acme", "acme-2", "a" * 32])
def test_valid_client_codes(code: str) -> None:
    assert ids.valid_client_code(code)


@pytest.mark.parametrize("code", ["", "a", "Acme", "1acme", "-acme", "ac_me", "a" * 33, "acme\n"])
def test_invalid_client_codes(code: str) -> None:
    assert not ids.valid_client_code(code)


def test_job_ids_are_24_lowercase_base32_and_dns_safe() -> None:
    job = ids.new_id("ftjob-")
    assert re.fullmatch(r"ftjob-[a-z2-7]{24}", job)
    assert len(job) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job)
    assert ids.new_id("ftjob-") != job


def test_derived_ids_are_stable_for_the_same_object() -> None:
    a = ids.derived_id("file-", "bucket", "incoming/acme/x.jsonl", "etag1", "seq")
    assert a == ids.derived_id("file-", "bucket", "incoming/acme/x.jsonl", "etag1", "seq")
    assert a != ids.derived_id("file-", "bucket", "incoming/acme/x.jsonl", "etag2", "seq")


def test_api_keys_hash_to_sha256_hex() -> None:
    key = ids.new_api_key()
    assert key.startswith("msk-") and len(key) > 40
    assert re.fullmatch(r"[0-9a-f]{64}", ids.hash_key(key))


def test_visibility_is_at_least_six_times_each_worker_timeout() -> None:
    for queue in names.QUEUES:
        assert names.visibility_timeout(queue) >= 6 * names.WORKER_TIMEOUT_SECONDS[queue]


def test_urls_come_from_secrets_manager_when_only_arns_are_given(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    from functions.core import secrets

    secrets.reset()  # a provider cached under another mock would not be this one's
    with mock_aws():
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.delenv("MONGODB_URL", raising=False)
        monkeypatch.delenv("REDIS_URL", raising=False)
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        mongo_arn = sm.create_secret(Name="m", SecretString="mongodb://db:27017")["ARN"]
        redis_arn = sm.create_secret(Name="r", SecretString="rediss://cache:6379/0")["ARN"]
        s = Settings(_env_file=None, mongodb_url_secret_arn=mongo_arn, redis_url_secret_arn=redis_arn)
    secrets.reset()
    assert s.mongodb_url == "mongodb://db:27017" and s.redis_dsn == "rediss://cache:6379/0"
