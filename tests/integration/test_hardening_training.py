"""Training hardening (issue #18): a killed trainer fails its job at once, not at the reconciler's quiet check; a
trainer that wrote result.json is settled once; cluster-status tells a tenant nothing about other tenants' jobs;
a deleted model's checkpoints are no longer listed.

The local backend is wired as `make run` wires it (`Platform._watch_runs`), with a small fake trainer as its command;
jobs go through the API, the dispatch queue and the dispatch worker; what a user sees is read back through the API."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from functions.compute import get_training_backend, local, reset_training_backends
from functions.compute.local import LocalBackend
from functions.core import names
from functions.core.models import JobStatus
from functions.core.settings import Settings, get_settings
from functions.local.resources import LocalResources
from functions.local.runtime import Platform
from functions.local.sqs_poller import SqsPoller
from functions.store.mongo import get_store
from tests.helpers import waiting
from tests.helpers.datasets import chat_lines
from tests.helpers.fake_trainer import write_fake_trainer
from tests.helpers.jobs import Jobs, create, validated_file
from tests.helpers.tiny_models import BASE

Headers = dict[str, str]


wait_for = functools.partial(waiting.wait_for, timeout=10.0)


class Trainers:
    """The local backend as `make run` wires it, running the fake trainer (or any command)."""

    def __init__(self, tmp_path: Path, env: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.env, self.monkeypatch = tmp_path, env, monkeypatch
        self.pids = tmp_path / "pids"
        self.pids.mkdir()

    def wire(self, mode: str = "sleep", command: list[str] | None = None) -> LocalBackend:
        """`sleep`: note the pid, then train "forever". `succeed`: write result.json to S3 as ministudio-train does."""
        behaviour = {"pid_dir": str(self.pids), "sleep": 600} if mode == "sleep" else {"write_result": True}
        script = write_fake_trainer(self.tmp / "fake_trainer.py", **behaviour)
        argv = command or [sys.executable, str(script)]
        self.monkeypatch.setattr(local, "create_backend", lambda s: LocalBackend(s, command=argv, poll_seconds=0.1))
        settings = self.env(COMPUTE_BACKEND="local", LOCAL_RUNS_DIR=str(self.tmp / "runs"), CANCEL_GRACE_SECONDS="2")
        Platform(print_fn=lambda _: None)._watch_runs()
        backend = get_training_backend(settings)
        assert isinstance(backend, LocalBackend)
        return backend

    def pid(self, job_id: str) -> int:
        return int(wait_for(lambda: (self.pids / job_id).exists() and (self.pids / job_id).read_text()))


@pytest.fixture
def trainers(tmp_path: Path, env: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> Iterator[Trainers]:
    harness = Trainers(tmp_path, env, monkeypatch)
    reset_training_backends()
    yield harness
    reset_training_backends()  # closes the backend: its trainers stop
    for pid_file in harness.pids.iterdir():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)


@pytest.fixture
def dispatch_worker(resources: LocalResources, env: Callable[..., Settings]) -> Callable[[], int]:
    from functions.workers import dispatch

    sqs = boto3.client("sqs", endpoint_url=get_settings().aws_endpoint_url)
    poller = SqsPoller(sqs, resources.url(names.DISPATCH_QUEUE), dispatch.handler, wait_seconds=0)
    return lambda: poller.drain(timeout=60)


@pytest.fixture
def start(
    client: TestClient, ingest: Callable[[], int], dispatch_worker: Callable[[], int]
) -> Callable[[Headers], str]:
    """Start a job as a user does (a validated file, POST the job) and let the dispatch worker launch it; its id."""

    def start_job(headers: Headers) -> str:
        job = create(client, headers, training_file=validated_file(client, headers, ingest, chat_lines(12)))
        assert job.status_code == 200, job.text
        dispatch_worker()
        return str(job.json()["id"])

    return start_job


def job_of(client: TestClient, headers: Headers, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=headers).json()
    return body


def test_a_killed_trainer_fails_its_job_within_seconds_with_the_reason(
    client: TestClient, make_tenant: Callable[..., Headers], start: Callable[[Headers], str], trainers: Trainers
) -> None:
    trainers.wire("sleep")
    acme = make_tenant("acme")
    job_id = start(acme)
    pid = trainers.pid(job_id)
    assert job_of(client, acme, job_id)["status"] == "running"

    os.kill(pid, signal.SIGKILL)  # the OOM killer, or an operator

    failed = wait_for(lambda: (j := job_of(client, acme, job_id))["status"] == "failed" and j, timeout=5)
    assert failed["error"]["code"] == "trainer_exited"
    assert "killed by SIGKILL" in failed["error"]["message"] and "training" in failed["error"]["message"]
    events = client.get(f"/v1/fine_tuning/jobs/{job_id}/events", headers=acme).json()["data"]
    assert [e["message"] for e in events if e["level"] == "error"] == ["The job failed: " + failed["error"]["message"]]


def test_a_trainer_that_cannot_start_fails_its_job_at_once(
    client: TestClient, make_tenant: Callable[..., Headers], start: Callable[[Headers], str], trainers: Trainers
) -> None:
    trainers.wire(command=[str(trainers.tmp / "no-such-trainer")])
    acme = make_tenant("acme")
    job_id = start(acme)
    failed = wait_for(lambda: (j := job_of(client, acme, job_id))["status"] == "failed" and j, timeout=5)
    assert "could not start" in failed["error"]["message"]


def test_a_trainer_that_wrote_its_result_is_settled_once(
    client: TestClient,
    make_tenant: Callable[..., Headers],
    start: Callable[[Headers], str],
    status_worker: Callable[[], int],
    trainers: Trainers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = get_store()
    moves: list[str] = []
    transition = store.jobs.transition

    def counted(job_id: str, expected: Any, status: str, **fields: Any) -> Any:
        moved = transition(job_id, expected, status, **fields)
        if moved is not None:
            moves.append(str(status))
        return moved

    monkeypatch.setattr(store.jobs, "transition", counted)
    trainers.wire("succeed")
    acme = make_tenant("acme")
    job_id = start(acme)

    # Settled by the exit, before the status queue's result.json event is even looked at...
    done = wait_for(lambda: (j := job_of(client, acme, job_id))["status"] == "succeeded" and j, timeout=15)
    assert done["fine_tuned_model"].startswith(f"ft:{BASE}:acme:") and done["trained_tokens"] == 42
    # ...and that event, handled later, moves nothing.
    assert status_worker() >= 1
    after = job_of(client, acme, job_id)
    assert after["status"] == "succeeded" and after["finished_at"] == done["finished_at"]
    assert moves.count(JobStatus.succeeded) == 1 and JobStatus.failed not in moves
    events = client.get(f"/v1/fine_tuning/jobs/{job_id}/events", headers=acme).json()["data"]
    assert [e["message"] for e in events].count("The job has successfully completed") == 1


def test_cluster_status_shows_counts_and_only_the_callers_own_jobs(
    client: TestClient, make_tenant: Callable[..., Headers], start: Callable[[Headers], str], trainers: Trainers
) -> None:
    trainers.wire("sleep")  # one run at a time (LOCAL_MAX_CONCURRENT_JOBS=1): the second job waits
    acme, globex = make_tenant("acme"), make_tenant("globex")
    acme_job = start(acme)
    trainers.pid(acme_job)
    globex_job = start(globex)

    seen = {}
    for name, headers, other in (("acme", acme, globex_job), ("globex", globex, acme_job)):
        response = client.get("/fine_tuning/cluster-status", headers=headers)
        assert response.status_code == 200 and response.json()["ok"] is True
        assert other not in response.text, f"{name} sees the other tenant's job"
        seen[name] = response.json()["status"]
    assert seen["acme"]["runs"] == {
        "running": 1,
        "queued": 1,
        "max_concurrent": 1,
        "own": {"running": [acme_job], "queued": []},
    }
    assert seen["globex"]["runs"]["own"] == {"running": [], "queued": [globex_job]}
    assert seen["acme"]["backend"] == "local" and seen["acme"]["cpu"]["total"] >= 1  # capacity stays


def test_deleting_a_model_removes_its_checkpoints_from_the_jobs_list(
    client: TestClient, make_tenant: Callable[..., Headers], jobs: Jobs, s3: Any
) -> None:
    acme = make_tenant("acme")
    bucket = get_settings().artifacts_bucket
    made = {}
    for suffix in ("gone", "kept"):
        job_id = made[suffix] = jobs.running(acme, chat_lines(12), suffix=suffix)
        prefix = f"artifacts/acme/{job_id}/"
        jobs.report(prefix + "checkpoints/epoch-1/adapter_model.safetensors", b"w")
        jobs.report(prefix + "result.json", {"status": "succeeded", "adapter_uri": f"s3://{bucket}/{prefix}adapter/"})

    def checkpoints(job_id: str) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = client.get(f"/v1/fine_tuning/jobs/{job_id}/checkpoints", headers=acme).json()[
            "data"
        ]
        return listed

    assert len(checkpoints(made["gone"])) == 1 and len(checkpoints(made["kept"])) == 1
    model = job_of(client, acme, made["gone"])["fine_tuned_model"]
    assert client.delete(f"/v1/models/{model}", headers=acme).status_code == 200

    assert checkpoints(made["gone"]) == []
    left = s3.list_objects_v2(Bucket=bucket, Prefix=f"artifacts/acme/{made['gone']}/checkpoints/")
    assert left.get("KeyCount", 0) == 0
    assert len(checkpoints(made["kept"])) == 1  # another model's checkpoints stay
