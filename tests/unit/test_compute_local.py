"""The local backend against a real child process: a small fake trainer whose behaviour comes from the spec."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from functions import compute
from functions.compute import BackendUnavailable, get_training_backend, reset_training_backends
from functions.compute.base import RunState, RunStatus, TrainingSpec
from functions.compute.local import LocalBackend
from functions.core.settings import Settings
from tests.helpers import waiting
from tests.helpers.fake_trainer import write_fake_trainer
from tests.helpers.specs import training_spec

wait_for = functools.partial(waiting.wait_for, interval=0.02)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # a zombie no longer runs
    except psutil.NoSuchProcess:
        return True


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.script = write_fake_trainer(tmp_path / "fake_trainer.py")
        self.runs_dir = tmp_path / "runs"
        self.backends: list[LocalBackend] = []

    def backend(self, **settings: Any) -> LocalBackend:
        backend = LocalBackend(
            Settings(**{"cancel_grace_seconds": 5.0, **settings}),
            command=[sys.executable, str(self.script)],
            runs_dir=self.runs_dir,
            poll_seconds=0.1,
        )
        self.backends.append(backend)
        return backend

    def spec(self, name: str, **behaviour: Any) -> TrainingSpec:
        hp = {"name": name, "pid_file": str(self.pid_file(name)), **behaviour}
        return training_spec(name, hyperparameters=hp)

    def pid_file(self, name: str) -> Path:
        return self.tmp / f"{name}.pids"

    def pids(self, name: str) -> list[int]:
        path = self.pid_file(name)
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def wait_state(self, backend: LocalBackend, name: str, state: RunState, timeout: float = 30.0) -> RunStatus:
        return wait_for(lambda: (s := backend.status(name)).state is state and s, timeout)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    for backend in harness.backends:
        backend.close()
    for pid_file in tmp_path.glob("*.pids"):  # a failed test must not leave its trainers behind
        for pid in pid_file.read_text().split():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGKILL)


def test_run_that_exits_zero_succeeds(h: Harness) -> None:
    backend = h.backend()
    first = backend.submit("run-ok", h.spec("run-ok"))
    assert first.state in (RunState.running, RunState.succeeded)
    done = h.wait_state(backend, "run-ok", RunState.succeeded)
    assert done.exit_code == 0 and done.backend_id == str(h.pids("run-ok")[0])
    assert "last words" in backend.logs("run-ok")


def test_run_that_exits_non_zero_fails_with_the_log_tail(h: Harness) -> None:
    backend = h.backend()
    backend.submit("run-bad", h.spec("run-bad", exit=3))
    failed = h.wait_state(backend, "run-bad", RunState.failed)
    assert failed.exit_code == 3
    assert failed.message is not None and "exited with code 3" in failed.message and "last words" in failed.message


def test_duplicate_submit_starts_one_process_even_from_a_fresh_backend(h: Harness) -> None:
    backend = h.backend()
    spec = h.spec("run-dup", wait_for=str(h.tmp / "release"))
    threads = [threading.Thread(target=backend.submit, args=("run-dup", spec)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    again = h.backend().submit("run-dup", spec)  # what a restarted control plane would do
    assert again.state is RunState.running
    (h.tmp / "release").touch()
    h.wait_state(backend, "run-dup", RunState.succeeded)
    assert h.backend().submit("run-dup", spec).state is RunState.succeeded  # a finished run is not restarted
    assert len(h.pids("run-dup")) == 1


def test_runs_beyond_the_limit_wait_and_start_in_submit_order(h: Harness) -> None:
    backend = h.backend(local_max_concurrent_jobs=1)
    order = str(h.tmp / "order")
    assert (
        backend.submit("run-a", h.spec("run-a", order_file=order, wait_for=str(h.tmp / "go"))).state is RunState.running
    )
    for name in ("run-b", "run-c"):
        assert backend.submit(name, h.spec(name, order_file=order)).state is RunState.pending
    assert backend.cluster_status()["runs"] == {"running": ["run-a"], "queued": ["run-b", "run-c"], "max_concurrent": 1}
    assert h.pids("run-b") == []
    (h.tmp / "go").touch()
    for name in ("run-a", "run-b", "run-c"):
        h.wait_state(backend, name, RunState.succeeded)
    assert Path(order).read_text().split() == ["run-a", "run-b", "run-c"]


def test_cancel_of_a_running_run_lets_it_checkpoint_and_leaves_no_process(h: Harness) -> None:
    backend = h.backend()
    child_file = h.tmp / "child.pid"
    backend.submit("run-stop", h.spec("run-stop", sleep=600, child_pid_file=str(child_file)))
    wait_for(lambda: "ready" in backend.logs("run-stop"))  # signal handlers installed, worker started
    backend.cancel("run-stop")
    done = h.wait_state(backend, "run-stop", RunState.cancelled)
    assert done.exit_code == 0 and "checkpoint saved" in backend.logs("run-stop")
    assert wait_for(lambda: gone(h.pids("run-stop")[0]) and gone(int(child_file.read_text())))
    assert backend.cancel("run-stop").state is RunState.cancelled  # cancelling a finished run changes nothing


def test_a_run_that_ignores_sigterm_is_killed_after_the_grace_period(h: Harness) -> None:
    backend = h.backend(cancel_grace_seconds=0.3)
    child_file = h.tmp / "child.pid"
    backend.submit("run-stubborn", h.spec("run-stubborn", sleep=600, ignore_term=True, child_pid_file=str(child_file)))
    wait_for(lambda: "ready" in backend.logs("run-stubborn"))
    backend.cancel("run-stubborn")
    done = h.wait_state(backend, "run-stubborn", RunState.cancelled)
    assert done.exit_code == -signal.SIGKILL
    assert wait_for(lambda: gone(h.pids("run-stubborn")[0]) and gone(int(child_file.read_text())))


def test_cancel_of_a_queued_run_removes_it_from_the_queue(h: Harness) -> None:
    backend = h.backend(local_max_concurrent_jobs=1)
    backend.submit("run-first", h.spec("run-first", wait_for=str(h.tmp / "go")))
    backend.submit("run-queued", h.spec("run-queued"))
    backend.submit("run-last", h.spec("run-last"))
    assert backend.cancel("run-queued").state is RunState.cancelled
    assert backend.cluster_status()["runs"]["queued"] == ["run-last"]
    (h.tmp / "go").touch()
    h.wait_state(backend, "run-last", RunState.succeeded)  # FIFO: had run-queued still been queued, it went first
    assert h.pids("run-queued") == [] and backend.status("run-queued").state is RunState.cancelled


def test_the_child_gets_no_port_limited_threads_lower_priority_and_its_own_folder(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", "8000")
    backend = h.backend(local_run_threads=1, local_run_nice=5, local_run_memory_limit_mb=8192)
    backend.submit("run-env", h.spec("run-env"))
    h.wait_state(backend, "run-env", RunState.succeeded)
    line = next(line for line in backend.logs("run-env").splitlines() if line.startswith("env "))
    seen = json.loads(line[4:])
    assert seen["port"] is None and seen["omp"] == "1" and seen["mkl"] == "1"
    assert seen["nice"] == min(19, os.nice(0) + 5)
    assert seen["rlimit_as"] == 8192 * 1024 * 1024
    assert Path(seen["cwd"]) == h.runs_dir / "run-env"


def test_closing_stops_running_runs_and_the_next_backend_starts_the_queue(h: Harness) -> None:
    backend = h.backend(local_max_concurrent_jobs=1)
    backend.submit("run-busy", h.spec("run-busy", wait_for=str(h.tmp / "never")))
    backend.submit("run-next", h.spec("run-next"))
    wait_for(lambda: "ready" in backend.logs("run-busy"))
    backend.close()
    stopped = backend.status("run-busy")
    assert stopped.state is RunState.cancelled and stopped.message == "stopped: the control plane shut down"
    assert "checkpoint saved" in backend.logs("run-busy") and gone(h.pids("run-busy")[0])
    assert backend.status("run-next").state is RunState.pending and h.pids("run-next") == []
    h.wait_state(h.backend(), "run-next", RunState.succeeded)


def test_the_trainer_dies_with_a_control_plane_that_is_killed(h: Harness) -> None:
    # A control plane whose submit runs on a short-lived worker thread: the child must outlive that thread
    # (it is forked by the backend's launcher thread) but not the process.
    control_plane = textwrap.dedent(
        f"""
        import sys, threading, time
        from functions.compute.local import LocalBackend
        from functions.compute.base import TrainingSpec
        from functions.core.settings import Settings
        backend = LocalBackend(Settings(), command=[sys.executable, {str(h.script)!r}], runs_dir={str(h.runs_dir)!r})
        hp = {{"pid_file": {str(h.pid_file("run-orphan"))!r}, "sleep": 600}}
        spec = TrainingSpec(job_id="run-orphan", tenant="acme", model="m", training_file="s3://b/t.jsonl",
                            output="s3://b/o/", hyperparameters=hp)
        worker = threading.Thread(target=backend.submit, args=("run-orphan", spec))
        worker.start()
        worker.join()
        print("submitted", flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", control_plane], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "submitted"
        trainer = wait_for(lambda: h.pids("run-orphan"))[0]
        time.sleep(0.5)  # the submitting thread has ended: the trainer must still be alive
        assert not gone(trainer)
        parent.kill()
        parent.wait()
        assert wait_for(lambda: gone(trainer))
    finally:
        parent.kill()
        parent.wait()
    assert h.backend().status("run-orphan").state is RunState.failed  # nobody was left to record its end


def test_a_trainer_command_that_cannot_start_fails_clearly(h: Harness) -> None:
    backend = LocalBackend(Settings(), command=[str(h.tmp / "no-such-trainer")], runs_dir=h.runs_dir)
    h.backends.append(backend)
    failed = backend.submit("run-nocmd", h.spec("run-nocmd"))
    assert failed.state is RunState.failed and failed.message is not None and "could not start" in failed.message


def test_unknown_runs_are_missing_and_bad_names_are_refused(h: Harness) -> None:
    backend = h.backend()
    assert backend.status("run-nope").state is RunState.missing
    assert backend.cancel("run-nope").state is RunState.missing
    assert backend.logs("run-nope") == ""
    with pytest.raises(ValueError):
        backend.submit("../escape", h.spec("escape"))


def test_cluster_status_reports_the_machine_and_the_runs(h: Harness) -> None:
    backend = h.backend()
    status = backend.cluster_status()
    assert status["backend"] == "local"
    assert status["cpu"]["total"] == len(os.sched_getaffinity(0))
    assert 0 <= status["cpu"]["available"] <= status["cpu"]["total"]
    memory = status["memory"]
    assert memory["total_bytes"] == psutil.virtual_memory().total
    assert 0 < memory["available_bytes"] <= memory["total_bytes"]
    assert status["gpu"]["total"] == len(status["gpu"]["devices"]) >= status["gpu"]["available"]
    assert status["runs"] == {"running": [], "queued": [], "max_concurrent": 1}


def test_the_factory_picks_the_configured_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(compute_backend="local", local_runs_dir=str(tmp_path))
    try:
        backend = get_training_backend(settings)
        assert isinstance(backend, LocalBackend) and backend.runs_dir == tmp_path
        assert get_training_backend(settings) is backend  # one launcher thread per process, not per call
        assert get_training_backend(settings.model_copy()) is backend  # a reloaded, equal Settings object
    finally:
        reset_training_backends()
    # A configured backend whose module this build lacks is refused by name, not with a bare ImportError.
    monkeypatch.setitem(
        compute.BACKENDS, "sagemaker", compute.Backend("functions.compute.not_in_this_build:create_backend", "")
    )
    with pytest.raises(BackendUnavailable, match=r"COMPUTE_BACKEND='sagemaker'.*missing from this installation"):
        get_training_backend(Settings(compute_backend="sagemaker"))


def test_gpus_come_from_nvidia_smi_when_it_is_present(
    h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nvidia-smi's csv,noheader,nounits output as an H100 machine prints it; one GPU runs a process.
    fake_smi = tmp_path / "bin" / "nvidia-smi"
    fake_smi.parent.mkdir()
    fake_smi.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            case "$1" in
              --query-gpu=*) echo '0, GPU-aaa, NVIDIA H100 80GB HBM3, 81559, 1024'
                             echo '1, GPU-bbb, NVIDIA H100 80GB HBM3, 81559, 0' ;;
              --query-compute-apps=*) echo 'GPU-aaa' ;;
            esac
            """
        )
    )
    fake_smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_smi.parent}{os.pathsep}{os.environ['PATH']}")
    gpu = h.backend().cluster_status()["gpu"]
    assert gpu["total"] == 2 and gpu["available"] == 1
    assert gpu["devices"][0] == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "memory_total_mib": 81559,
        "memory_used_mib": 1024,
        "busy": True,
    }
