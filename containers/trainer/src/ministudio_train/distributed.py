"""The trainer as N data-parallel workers on Ray Train: `ministudio-train` with `compute.workers > 1` becomes the
driver of a `TorchTrainer` (a process group over gloo on CPU, NCCL on GPU) whose workers each run the very same
trainer (`cli.execute`, with the step of parallel.py).

- Placement is Ray's: inside a Ray job (the `ray` and `eks` backends) the driver joins that cluster (`RAY_ADDRESS`);
  run anywhere else (the `local` backend) it starts a private Ray instance sized to the workers.
- Rank 0 alone writes: progress, metrics, checkpoints, the adapter and result.json. The other ranks get
  `FollowerOutputs`, which read the output (to resume from its checkpoints) and write nothing.
- A lost worker: Ray Train stops the group and starts it again (`FailureConfig(max_failures)`); each worker's trainer
  resumes from the newest complete checkpoint (resume.py) as the next attempt, and progress.json carries
  `worker_restarts`, which the control plane turns into a job event. An error that is not the trainer's verdict on
  the job (a peer gone mid all-reduce) is raised to Ray instead of being reported, so it restarts rather than fails.
- Cancelling: SIGTERM reaches the driver (Ray's job stop, the local backend); the driver raises a flag in a small
  actor the workers poll, and they all stop at the same step (parallel.Group.agreed), checkpoint and end cancelled.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ministudio_common import s3uri

from ministudio_train import cli, mlflow_registry, parallel
from ministudio_train.outputs import LATEST_ATTEMPT, Outputs, now_iso
from ministudio_train.spec import JobSpec

log = logging.getLogger("ministudio_train")
MAX_FAILURES_ENV = "MINISTUDIO_TRAIN_MAX_FAILURES"  # worker-group restarts before the job fails (default 3)
POLL_SECONDS = 1.0  # how often a worker asks the driver whether to stop


class FollowerOutputs(Outputs):
    """What a rank other than 0 sees of the output: the checkpoints to resume from, and nowhere to write."""

    def __init__(self, output: str, staging: Path) -> None:  # no super(): it would clear result.json and metrics
        self.remote = s3uri.is_s3(output)
        self.uri = output if not self.remote or output.endswith("/") else output + "/"
        self.root = staging if self.remote else Path(output)
        self.model_dir = self.checkpoint_dir = None
        self._s3, self._index, self.puts = None, {}, 0
        self.last_progress, self.attempt = None, None
        self.earlier_result: dict[str, Any] = {}  # rank 0 alone judges an earlier attempt's result

    def begin_attempt(self) -> int:
        return 0

    def progress(
        self, payload: dict[str, Any], metrics_line: dict[str, Any] | None = None, force: bool = False
    ) -> None:
        return None

    def flush(self, force: bool = False) -> None:
        return None

    def restore_metrics(self, lines: bytes) -> None:
        return None

    def save_dir(self, src: Path, name: str) -> str:
        return ""

    def result(self, payload: dict[str, Any]) -> None:
        return None

    def final(self, payload: dict[str, Any]) -> None:
        """The driver's own result.json, for a run whose workers could not write one (they all failed or died)."""
        attempt = json.loads(self._read(LATEST_ATTEMPT) or b"{}").get("attempt")
        body = json.dumps({**payload, "attempt": attempt, "finished_at": now_iso()}, indent=2).encode()
        if self.remote:
            s3uri.upload_bytes(body, self.uri + "result.json", s3=self._client(), content_type="application/json")
        else:
            (self.root / "result.json").write_bytes(body)

    def status(self) -> str | None:
        return json.loads(self._read("result.json") or b"{}").get("status")


class ChiefOutputs(Outputs):
    """Rank 0's outputs: as one process's, with how many times the workers were restarted in progress.json."""

    restarts = 0

    def progress(
        self, payload: dict[str, Any], metrics_line: dict[str, Any] | None = None, force: bool = False
    ) -> None:
        super().progress(
            {**payload, "worker_restarts": self.restarts} if self.restarts else payload, metrics_line, force
        )


class Coordinator:
    """A Ray actor the driver and the workers share: the stop request, and how often the workers have started."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.starts = 0

    def stop(self, signum: int) -> None:
        self.signum = signum

    def stopping(self) -> int | None:
        return self.signum

    def started(self) -> int:
        self.starts += 1
        return self.starts


class AgreedStop(cli.StopFlag):
    """A stop request this worker hears (`asked` returns a signal number or None), agreed on by every worker at
    each call, so that all of them stop at the same step."""

    def __init__(self, group: parallel.Group, asked: Callable[[], int | None]) -> None:
        super().__init__()
        self.asked: Callable[[], int | None] = asked
        self.heard: int | None = None
        self.agreed = group.agreed(self._local)

    def _local(self) -> bool:
        self.heard = self.heard or self.asked()
        return self.heard is not None

    def __call__(self) -> bool:
        if self.signum is None and self.agreed():
            self.signum = self.heard or signal.SIGTERM
        return self.signum is not None


def _poller(coordinator: Any) -> Callable[[], int | None]:
    """The driver's stop request, asked of the coordinator at most every POLL_SECONDS."""
    import ray

    last = [0.0]

    def asked() -> int | None:
        if time.monotonic() - last[0] < POLL_SECONDS:
            return None
        last[0] = time.monotonic()
        value = ray.get(coordinator.stopping.remote())
        return int(value) if value is not None else None

    return asked


def run_worker(spec: JobSpec, stop: cli.StopFlag, registry: dict[str, Any], log_every: int | None,
               restarts: Callable[[], int] | None = None, retry_errors: bool = False) -> int:  # fmt: skip
    """One data-parallel worker in an initialised process group: the trainer on its share, writing on rank 0 only."""
    group = parallel.Group.current()
    with tempfile.TemporaryDirectory(prefix="ministudio-train-") as staging:
        out: Outputs
        if group.chief:
            out = ChiefOutputs(spec.output, Path(staging), spec.model_dir, spec.checkpoint_dir)
            out.restarts = restarts() if restarts else 0
            settings: mlflow_registry.RegistrySettings | None = mlflow_registry.RegistrySettings.resolve(registry)
        else:
            out, settings = FollowerOutputs(spec.output, Path(staging)), None
        log.info("worker %d of %d starting (%s)", group.rank + 1, group.world, spec.job_id)
        return cli.execute(spec, out, stop, log_every, settings, retry_errors=retry_errors)


def worker_loop(config: dict[str, Any]) -> None:
    """What every Ray Train worker runs: the trainer on its share of the data, writing only on rank 0."""
    import ray

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    spec = JobSpec.model_validate(config["spec"])
    group, coordinator = parallel.Group.current(), config["coordinator"]
    stop = AgreedStop(group, _poller(coordinator))
    code = run_worker(spec, stop, config["registry"], config.get("log_every"),
                      lambda: int(ray.get(coordinator.started.remote())) - 1, retry_errors=True)  # fmt: skip
    if group.chief and code == cli.EXIT_UNREPORTED:
        raise RuntimeError("rank 0 could not write result.json")


def _max_failures() -> int:
    return int(os.environ.get(MAX_FAILURES_ENV, "3"))


def _init_ray(spec: JobSpec) -> None:
    import ray

    if ray.is_initialized():
        return
    c = spec.effective_compute
    address = os.environ.get("RAY_ADDRESS")
    if address:  # inside a Ray job (ray backend, KubeRay): that cluster places the workers
        log.info("joining the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True)
    else:  # a private instance on this machine, exactly the size of the workers, reachable from it alone
        # `ray.init` would turn token auth on and write a token to ~/.ray, which every later `ray start` on the machine
        # would then demand: a private instance on 127.0.0.1 needs neither.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        log.info("starting a private Ray instance on 127.0.0.1")
        ray.init(address="local", num_cpus=c.processes * c.cpus_per_worker, num_gpus=c.gpus, include_dashboard=False,
                 _node_ip_address="127.0.0.1")  # fmt: skip


def run(spec: JobSpec, registry: dict[str, Any], stop: cli.StopFlag, log_every: int | None = None) -> int:
    """Drive `compute.processes` workers through Ray Train; the exit code reads as one trainer's would."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    c = spec.effective_compute
    _init_ray(spec)
    coordinator: Any = ray.remote(num_cpus=0)(Coordinator).remote()
    resources: dict[str, float] = {"CPU": c.cpus_per_worker, **({"GPU": 1} if c.gpus_per_worker else {})}
    storage = tempfile.mkdtemp(prefix="ministudio-raytrain-")
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={
            "spec": spec.to_json(),
            "coordinator": coordinator,
            "registry": registry,
            "log_every": log_every,
        },
        scaling_config=ScalingConfig(num_workers=c.processes, use_gpu=c.gpus > 0, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if c.gpus_per_worker else "gloo"),
        run_config=RunConfig(
            name=spec.job_id, storage_path=storage, failure_config=FailureConfig(max_failures=_max_failures())
        ),
    )
    log.info("training on %d Ray Train workers (%s each)", c.processes, resources)
    outcome: dict[str, BaseException | None] = {"error": None}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # reported below, in the driver's thread
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    asked = False
    while thread.is_alive():
        thread.join(0.5)
        if stop() and not asked:
            coordinator.stop.remote(stop.signum or signal.SIGTERM)
            asked = True
    shutil.rmtree(storage, ignore_errors=True)
    return _exit_code(spec, outcome["error"], stop)


def _exit_code(spec: JobSpec, error: BaseException | None, stop: cli.StopFlag) -> int:
    with tempfile.TemporaryDirectory(prefix="ministudio-train-") as staging:
        view = FollowerOutputs(spec.output, Path(staging))
        status = view.status()
        if status in ("succeeded", "cancelled"):
            return cli.EXIT_OK
        if status == "failed":
            return cli.EXIT_FAILED
        if stop():
            view.final({"job_id": spec.job_id, "tenant": spec.tenant, "model": spec.model, "status": "cancelled",
                        "message": "stopped before the workers could checkpoint"})  # fmt: skip
            return cli.EXIT_OK
        message = f"the Ray Train workers failed after {_max_failures()} restart(s): {error or 'no result.json'}"
        log.error(message)
        error_body = {"code": "internal_error", "message": message[:1000], "param": None}
        view.final({"job_id": spec.job_id, "tenant": spec.tenant, "model": spec.model, "status": "failed",
                    "error": error_body})  # fmt: skip
        return cli.EXIT_FAILED
