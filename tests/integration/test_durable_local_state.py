"""The parts of the local platform's durable state, each against its real engine: the embedded montydb store on
disk, moto's recording replayed into a new moto server after SIGKILL, Redis's append-only file, the credentials file."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from pymongo.errors import DuplicateKeyError

from functions.core.models import Job, JobStatus, Tenant
from functions.local import moto_recording
from functions.local.procs import start_moto, start_redis
from functions.local.state import Credentials, DataDir
from functions.store.embedded import open_database
from functions.store.mongo import Store


def _store(path: Path) -> Store:
    store = Store(open_database(path, "mini_studio"))
    store.ensure_indexes()
    return store


def test_the_embedded_store_keeps_records_across_a_reopen_and_enforces_unique_indexes(tmp_path: Path) -> None:
    store = _store(tmp_path / "documents")
    store.tenants.create(Tenant(id="acme"))
    store.jobs.create(Job(id="ftjob-1", client_code="acme", model="m", training_file="f", idempotency_key="k1"))
    # a second job with the same idempotency key is refused, as MongoDB's partial unique index does
    with pytest.raises(DuplicateKeyError):
        store.jobs.col.insert_one({"_id": "ftjob-2", "client_code": "acme", "idempotency_key": "k1"})
    # and an existing tenant is a Conflict, not a second record
    with pytest.raises(Exception, match="already exists"):
        store.tenants.create(Tenant(id="acme"))

    reopened = _store(tmp_path / "documents")
    assert [t.id for t in reopened.tenants.list()] == ["acme"]
    job = reopened.jobs.get("ftjob-1")
    assert job is not None and job.idempotency_key == "k1" and reopened.ping()


def test_conditional_transitions_are_atomic_across_threads(tmp_path: Path) -> None:
    store = _store(tmp_path / "documents")
    store.jobs.create(Job(id="ftjob-race", client_code="acme", model="m", training_file="f"))
    wins: list[bool] = []

    def claim() -> None:
        wins.append(store.jobs.transition("ftjob-race", [JobStatus.queued], JobStatus.dispatching) is not None)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins.count(True) == 1


def test_moto_recording_brings_objects_back_after_sigkill_and_a_torn_entry(tmp_path: Path) -> None:
    recording = tmp_path / "objects" / "recording.jsonl"
    first = start_moto(recording=recording)
    try:
        moto_recording.restore(first.url, recording)
        s3 = _s3(first.url)
        s3.create_bucket(Bucket="bucket-one")
        s3.put_object(Bucket="bucket-one", Key="datasets/a b.jsonl", Body=b"{}\n", Metadata={"client": "acme"})
        s3.put_object(Bucket="bucket-one", Key="gone", Body=b"x")
        s3.delete_object(Bucket="bucket-one", Key="gone")
        upload = s3.create_multipart_upload(Bucket="bucket-one", Key="big")
        parts = [s3.upload_part(Bucket="bucket-one", Key="big", UploadId=upload["UploadId"], PartNumber=n,
                                Body=body) for n, body in ((1, b"A" * 5 * 1024 * 1024), (2, b"B" * 7))]  # fmt: skip
        s3.complete_multipart_upload(
            Bucket="bucket-one", Key="big", UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": p["ETag"]} for n, p in enumerate(parts)]},
        )  # fmt: skip
        s3.get_object(Bucket="bucket-one", Key="big")  # reads are not recorded
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.stop()
    with recording.open("a") as f:  # a crash mid-write leaves half an entry
        f.write('{"headers": {"Host"')

    second = start_moto(recording=recording)
    try:
        before = recording.stat().st_size
        repaired = moto_recording.restore(second.url, recording, compact_above=0)  # and rewrite it as what it holds
        s3 = _s3(second.url)
        listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="bucket-one")["Contents"])
        assert listed == ["big", "datasets/a b.jsonl"]
        kept = s3.get_object(Bucket="bucket-one", Key="datasets/a b.jsonl")
        assert kept["Body"].read() == b"{}\n" and kept["Metadata"] == {"client": "acme"}
        assert len(s3.get_object(Bucket="bucket-one", Key="big")["Body"].read()) == 5 * 1024 * 1024 + 7
        assert repaired and "torn" in repaired[0]
    finally:
        second.stop()
    # the compacted recording holds only what is live, and replays to the same objects
    entries = recording.read_text().splitlines()
    assert len(entries) == 3 and recording.stat().st_size < before and "gone" not in recording.read_text()
    with start_moto(recording=recording) as third:
        moto_recording.restore(third.url, recording)
        s3 = _s3(third.url)
        assert s3.get_object(Bucket="bucket-one", Key="datasets/a b.jsonl")["Metadata"] == {"client": "acme"}
        assert len(s3.get_object(Bucket="bucket-one", Key="big")["Body"].read()) == 5 * 1024 * 1024 + 7


def test_what_is_recorded_is_only_s3_writes() -> None:
    write = moto_recording.is_object_write
    assert write("PUT", "/bucket/key", "", {}, b"")
    assert write("DELETE", "/bucket/key", "", {}, b"")
    assert write("POST", "/bucket", "delete", {}, b"<Delete")
    assert not write("GET", "/bucket/key", "", {}, b"")
    assert not write("PUT", "/bucket/key", "partNumber=1&uploadId=u", {}, b"")
    assert not write("PUT", "/bucket", "notification", {}, b"")
    assert not write("POST", "/", "", {"X-Amz-Target": "AmazonSQS.SendMessage"}, b"{}")
    assert not write("POST", "/", "", {}, b"Action=SendMessage")


def test_redis_keeps_its_data_in_the_append_only_file(tmp_path: Path) -> None:
    server = start_redis(data_dir=tmp_path / "redis")
    redis.Redis.from_url(server.url).set("revoked:key", "1")
    time.sleep(1.5)  # appendfsync everysec: a second later the write is on disk
    os.killpg(server.pid, signal.SIGKILL)  # no shutdown save: only the append-only file can bring it back
    server.stop()
    with start_redis(data_dir=tmp_path / "redis") as again:
        assert redis.Redis.from_url(again.url).get("revoked:key") == b"1"


def test_credentials_are_private_and_survive(tmp_path: Path) -> None:
    data = DataDir.at(tmp_path / "data")
    data.create()
    key = Credentials(data.credentials).get_or_create("admin_key", "msa-")
    assert key.startswith("msa-") and Credentials(data.credentials).get("admin_key") == key
    assert stat.S_IMODE(data.credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.root.stat().st_mode) == 0o700
    data.wipe()
    assert not data.root.exists()


def _s3(url: str) -> Any:
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")  # fmt: skip
