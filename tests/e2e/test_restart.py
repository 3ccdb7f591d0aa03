"""`make run` keeps its state: the platform killed with SIGKILL mid-training, mid-stream and with a file not yet
validated comes back on the same data directory with every tenant, key, file, job and deployment, the job resumes
from its checkpoint, the deployment answers again; `--fresh` starts from nothing.

The platform runs as `ministudio run` in a child process, as a user runs it, so it can really be killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from openai import OpenAI

from functions.core import names
from functions.local.procs import free_port
from tests.e2e import zorbia

CHECKPOINT_STEPS = 4
HYPERPARAMETERS = {"n_epochs": 2, "batch_size": 2, "max_seq_len": 64, "checkpoint_steps": CHECKPOINT_STEPS}
STEPS = 2 * 10  # 20 examples in batches of 2, two epochs


class Running:
    def __init__(self, process: subprocess.Popen[str], lines: list[str], port: int) -> None:
        self.process, self.lines, self.url = process, lines, f"http://127.0.0.1:{port}"

    def field(self, label: str) -> str:
        line = next(line for line in self.lines if line.startswith(label))
        return line[len(label) :].split()[0]

    @property
    def demo_key(self) -> str:
        line = next(line for line in self.lines if line.startswith("Demo tenant:"))
        return line.split(" key ")[1].split()[0]

    def openai(self, key: str | None = None) -> OpenAI:
        return OpenAI(base_url=f"{self.url}/v1", api_key=key or self.demo_key, max_retries=0, timeout=60)

    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=self.field("S3/SQS: moto server at"), region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip


def start(data_dir: Path, *extra: str) -> Running:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ISOLATE}
    env.update(MINISTUDIO_DATA_DIR=str(data_dir), LOG_DIR=str(data_dir.parent / "logs"), HF_HUB_OFFLINE="1",
               RECONCILE_STALE_SECONDS="5", LOCAL_RUN_THREADS="1")  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "functions.cli", "run", "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            if "Mini Studio ready" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(180):
        process.kill()
        raise AssertionError("the platform did not start:\n" + "\n".join(lines[-40:]))
    return Running(process, lines, port)


ISOLATE = ("AWS_ENDPOINT_URL", "REDIS_URL", "ADMIN_API_KEY", "INGEST_QUEUE_URL", "DISPATCH_QUEUE_URL",
           "STATUS_QUEUE_URL", "DATABASE_NAME", "LOCAL_RUNS_DIR", "LOCAL_SERVING_DIR", "INFERENCE_API_KEY",
           "MINISTUDIO_DATA_DIR", "PORT")  # fmt: skip


def kill(running: Running) -> None:
    """SIGKILL, as a power cut would leave it: no handler runs, children die with their parent."""
    running.process.send_signal(signal.SIGKILL)
    running.process.wait(30)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"
    subprocess.run(["pkill", "-9", "-f", str(tmp_path)], check=False)  # whatever is left


def wait(check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout:.0f}s")


def status_of(running: Running, deployment_id: str) -> str:
    headers = {"Authorization": f"Bearer {running.demo_key}"}
    return str(httpx.get(f"{running.url}/v1/deployments/{deployment_id}", headers=headers).json()["status"])


def artifacts(running: Running, job_id: str, name: str) -> Any:
    s3 = running.s3()
    try:
        body = s3.get_object(Bucket=names.DATASETS_BUCKET, Key=f"artifacts/demo/{job_id}/{name}")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def test_a_killed_platform_comes_back_with_everything_and_training_resumes(data_dir: Path, tmp_path: Path) -> None:
    first = start(data_dir)
    admin = {"Authorization": f"Bearer {first.field('Admin key:')}"}
    client = first.openai()
    # Given a second tenant with its own key, a validated file, a deployment that answers, and a job mid-training
    assert httpx.post(f"{first.url}/v1/tenants", json={"client_code": "acme"}, headers=admin).status_code == 201
    acme_key = httpx.post(f"{first.url}/v1/tenants/acme/api_keys", json={}, headers=admin).json()["key"]
    file = client.files.create(file=zorbia.dataset(tmp_path / "z.jsonl").open("rb"), purpose="fine-tune")
    wait(lambda: client.files.retrieve(file.id).status == "processed", 60)
    deployment = httpx.post(f"{first.url}/v1/deployments", json={"model": zorbia.BASE},
                            headers={"Authorization": f"Bearer {first.demo_key}"}).json()  # fmt: skip
    job = client.fine_tuning.jobs.create(model=zorbia.BASE, training_file=file.id, seed=7,
                                         hyperparameters=HYPERPARAMETERS)  # type: ignore[arg-type]  # fmt: skip
    checkpointed = wait(lambda: (p := artifacts(first, job.id, "progress.json")) and p["step"] > CHECKPOINT_STEPS, 300)
    assert checkpointed
    wait(lambda: status_of(first, deployment["id"]) == "ready", 120)
    # and a chat stream in flight
    ended: list[str] = []

    def chat() -> None:
        try:
            story: Any = [{"role": "user", "content": "Tell a long story."}]
            stream = client.chat.completions.create(model=zorbia.BASE, stream=True, max_tokens=400, messages=story)
            for _ in stream:
                pass
            ended.append("finished")
        except Exception as exc:  # the connection dies with the platform
            ended.append(type(exc).__name__)

    streaming = threading.Thread(target=chat)
    streaming.start()
    time.sleep(1.0)
    # and a file acknowledged a moment before the end, whose validation may not have run
    late = client.files.create(file=zorbia.dataset(tmp_path / "late.jsonl", repeat=2).open("rb"), purpose="fine-tune")
    killed_at = (artifacts(first, job.id, "progress.json") or {}).get("step", 0)

    # When the platform is killed with SIGKILL
    kill(first)
    streaming.join(30)
    assert not streaming.is_alive() and ended, "the interrupted chat hung on the client"

    # Then it starts again on the same directory and says what it restored
    second = start(data_dir)
    report = "\n".join(second.lines)
    assert "Restored:" in report and "2 tenants" in report and "1 deployments" in report, report
    assert second.demo_key == first.demo_key and second.field("Admin key:") == first.field("Admin key:")
    again = second.openai()
    assert sorted(f.id for f in again.files.list()) == sorted([file.id, late.id])
    assert again.files.retrieve(file.id).status == "processed"
    wait(lambda: again.files.retrieve(late.id).status == "processed", 60)
    assert second.openai(acme_key).models.list().data  # the other tenant's key still works
    # the job resumes from its checkpoint, redoing less than one interval, and succeeds
    done = wait(lambda: zorbia.finished(again, job.id), 600, 2)
    assert done.status == "succeeded", done.error
    result = artifacts(second, job.id, "result.json")
    assert result["attempt"] == 2 and result["steps"] == STEPS, result
    resumed = artifacts(second, job.id, f"checkpoints/{result['resumed_from']}/trainer_state.json")["step"]
    assert 0 < resumed <= killed_at < resumed + CHECKPOINT_STEPS + 2, (resumed, killed_at)
    events = [e.message for e in again.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert any("resumes from its last complete checkpoint" in m for m in events), events
    # and the deployment is ready again and answers
    wait(lambda: status_of(second, deployment["id"]) == "ready", 120)
    answer = again.chat.completions.create(
        model=zorbia.BASE, max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
    )
    assert answer.choices[0].message.content is not None
    second.process.send_signal(signal.SIGTERM)
    assert second.process.wait(60) is not None

    # When it is started with --fresh, nothing of that is left
    fresh = start(data_dir, "--fresh")
    try:
        assert fresh.demo_key != first.demo_key
        assert list(fresh.openai().files.list()) == []
        assert any("(new)" in line for line in fresh.lines)
    finally:
        fresh.process.send_signal(signal.SIGTERM)
        fresh.process.wait(60)
