"""The ray backend against a real Ray head (started here with `ray start --head`), through its Jobs REST API.

The trainer is a small fake script (same `--spec-json` interface as ministudio-train). The head's tests are skipped
when the `ray` package is not installed; the tests that need no head always run.
"""

from __future__ import annotations

import functools
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from functions.compute.base import RunState, RunStatus, TrainingSpec
from functions.compute.ray import RayBackend, RayBackendError
from functions.core.settings import Settings
from functions.local.procs import free_port
from tests.helpers import waiting
from tests.helpers.fake_trainer import write_fake_trainer
from tests.helpers.ray_head import local_ray_head
from tests.helpers.specs import training_spec

START_TIMEOUT = 90.0
pytestmark = pytest.mark.slow


wait_for = functools.partial(waiting.wait_for, timeout=60.0, interval=0.2)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    pytest.importorskip("ray", reason="the `ray` package is not installed (pip install 'ray[default]')")
    with local_ray_head() as address:
        yield address


@pytest.fixture
def trainer(tmp_path: Path) -> Path:
    return write_fake_trainer(tmp_path / "fake_trainer.py")


def make_backend(address: str, script: Path, **settings: Any) -> RayBackend:
    # A fresh local head may take longer than the default 10 s for its first submissions when this 2-core machine
    # is busy (the job agent starts on demand); tests that want a short timeout pass their own.
    config = {
        "ray_head_address": address,
        "ray_entrypoint_num_cpus": 1.0,
        "ray_request_timeout_seconds": 60,
        **settings,
    }
    return RayBackend(Settings(**config), command=[sys.executable, str(script)])


def spec(tmp_path: Path, name: str, **behaviour: Any) -> TrainingSpec:
    hp = {"pid_file": str(tmp_path / f"{name}.pids"), **behaviour}
    return training_spec(name, hyperparameters=hp)


def wait_state(backend: RayBackend, name: str, *states: RunState) -> RunStatus:
    return wait_for(lambda: (s := backend.status(name)).state in states and s)


def test_a_run_succeeds_and_a_duplicate_submit_finds_it(ray_head: str, trainer: Path, tmp_path: Path) -> None:
    backend = make_backend(ray_head, trainer, aws_endpoint_url="http://127.0.0.1:9")
    first = backend.submit("ray-ok", spec(tmp_path, "ray-ok", sleep=1))
    again = backend.submit("ray-ok", spec(tmp_path, "ray-ok", sleep=1))
    assert first.state is RunState.pending and again.backend_id == first.backend_id == "ray-ok"
    done = wait_state(backend, "ray-ok", RunState.succeeded)
    assert done.exit_code == 0
    assert backend.submit("ray-ok", spec(tmp_path, "ray-ok")).state is RunState.succeeded
    assert len((tmp_path / "ray-ok.pids").read_text().split()) == 1
    jobs = httpx.get(f"{ray_head}/api/jobs/").json()
    assert [j["submission_id"] for j in jobs].count("ray-ok") == 1
    logs = backend.logs("ray-ok")
    assert "ready endpoint=http://127.0.0.1:9" in logs and "last words" in logs  # env reached the trainer


def test_a_submit_racing_another_finds_the_existing_job(
    ray_head: str, trainer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job that exists, when submit's first look misses it (another dispatcher won the race),
    # then Ray's "already exists" refusal is read as that job, not as an error.
    backend = make_backend(ray_head, trainer)
    backend.submit("ray-race", spec(tmp_path, "ray-race"))
    real_job = backend._job
    looks: list[str] = []

    def first_look_misses(name: str) -> dict[str, Any] | None:
        looks.append(name)
        return None if len(looks) == 1 else real_job(name)

    monkeypatch.setattr(backend, "_job", first_look_misses)
    raced = backend.submit("ray-race", spec(tmp_path, "ray-race"))
    assert raced.state is not RunState.missing and raced.backend_id == "ray-race" and len(looks) == 2
    wait_state(backend, "ray-race", RunState.succeeded)
    assert len((tmp_path / "ray-race.pids").read_text().split()) == 1


def test_a_failing_run_is_failed_with_its_message(ray_head: str, trainer: Path, tmp_path: Path) -> None:
    backend = make_backend(ray_head, trainer)
    backend.submit("ray-bad", spec(tmp_path, "ray-bad", exit=3))
    failed = wait_state(backend, "ray-bad", RunState.failed)
    assert failed.exit_code == 3
    assert failed.message is not None and "exit code 3" in failed.message and "last words" in failed.message


def test_cancel_stops_a_sleeping_run_after_it_checkpoints(ray_head: str, trainer: Path, tmp_path: Path) -> None:
    # The checkpoint takes longer than Ray's default 3 s stop grace: only the backend's own grace lets it finish.
    backend = make_backend(ray_head, trainer, cancel_grace_seconds=20)
    backend.submit("ray-stop", spec(tmp_path, "ray-stop", sleep=600, checkpoint_seconds=5))
    wait_for(lambda: "ready" in backend.logs("ray-stop"))
    assert backend.cluster_status()["runs"] == {"running": ["ray-stop"], "queued": []}
    backend.cancel("ray-stop")
    wait_state(backend, "ray-stop", RunState.cancelled)
    assert "checkpoint saved" in backend.logs("ray-stop")
    pid = int((tmp_path / "ray-stop.pids").read_text().split()[0])
    assert wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    assert backend.cancel("ray-stop").state is RunState.cancelled
    assert backend.status("ray-never").state is RunState.missing
    assert backend.cancel("ray-never").state is RunState.missing and backend.logs("ray-never") == ""


def test_cluster_status_shows_the_heads_resources(ray_head: str, trainer: Path) -> None:
    backend = make_backend(ray_head, trainer)
    # The autoscaler monitor reports usage every few seconds: a job stopped just before may still show as using it.
    status = wait_for(lambda: (s := backend.cluster_status())["cpu"]["available"] == 1.0 and s)
    assert status["backend"] == "ray" and status["cpu"]["total"] == 1.0
    assert status["gpu"]["total"] == 0 and status["memory"]["total_bytes"] > 0
    assert status["runs"] == {"running": [], "queued": []}
    assert backend._node_totals()["CPU"] == 1.0  # the fallback used before the monitor's first report


def test_an_unreachable_head_gives_an_error_naming_ray_head_address(trainer: Path, tmp_path: Path) -> None:
    backend = make_backend(f"http://127.0.0.1:{free_port()}", trainer, ray_request_timeout_seconds=2)
    with pytest.raises(RayBackendError, match="RAY_HEAD_ADDRESS"):
        backend.submit("ray-nowhere", spec(tmp_path, "ray-nowhere"))
    with pytest.raises(RayBackendError, match="RAY_HEAD_ADDRESS is not set"):
        RayBackend(Settings(ray_head_address=None))
    with pytest.raises(RayBackendError, match="dashboard's HTTP address"):
        RayBackend(Settings(ray_head_address="ray://head:10001"))


def test_a_head_that_does_not_answer_in_time_names_ray_head_address(trainer: Path, tmp_path: Path) -> None:
    # A socket that accepts connections but never answers: the timeout, not a hang, ends the call.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        backend = make_backend(f"127.0.0.1:{silent.getsockname()[1]}", trainer, ray_request_timeout_seconds=0.5)
        with pytest.raises(RayBackendError, match=r"RAY_HEAD_ADDRESS\) did not answer GET"):
            backend.status("ray-silent")
