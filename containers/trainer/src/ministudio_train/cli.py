"""`ministudio-train`: read the job spec, train, and end with result.json and an exit code.

Exit codes: 0 succeeded or cancelled (result.json says which: a non-zero exit would make a Kubernetes Job or a
retrying runner start the cancelled job again), 1 failed (result.json holds the error), 2 the spec is unusable
and names no output to report to (the error goes to stderr), 3 result.json itself could not be written.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from ministudio_train import mlflow_registry
from ministudio_train.errors import Cancelled, TrainError
from ministudio_train.hyper import HYPERPARAMETERS
from ministudio_train.outputs import Outputs, write_failure_file
from ministudio_train.spec import JobSpec, SpecUnusable, load_spec, output_hint
from ministudio_train.train import Run, guard_oom

log = logging.getLogger("ministudio_train")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREPORTED = 0, 1, 2, 3


class StopFlag:
    """Turns SIGTERM/SIGINT into a flag the training loop polls between steps, so it can checkpoint first."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            log.warning("%s received: stopping after the current step", signal.Signals(signum).name)
        self.signum = signum

    def __call__(self) -> bool:
        return self.signum is not None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ministudio-train", description="LoRA fine-tuning of a base model on chat JSONL")
    p.add_argument("command", nargs="?", choices=["train"], help="SageMaker starts images as `<image> train`")
    p.add_argument("--spec", help="job spec JSON file")
    p.add_argument("--spec-json", help="job spec as a JSON string")
    for name in ("job_id", "tenant", "model", "training_file", "validation_file", "output", "suffix"):
        p.add_argument("--" + name.replace("_", "-"), dest=name)
    p.add_argument("--seed", type=int)
    for name in HYPERPARAMETERS:  # kept as strings: "auto" is valid and hyper.resolve checks every value
        p.add_argument("--" + name.replace("_", "-"), dest=name)
    p.add_argument("--log-every", type=int, help="steps between progress reports (default: total/200, at least 1)")
    # Seed 002's registry; each flag falls back to its variable (MLFLOW_TRACKING_URI, MODEL_NAME...): see
    # mlflow_registry.py.
    for name in (
        "mlflow_tracking_uri",
        "registered_model_name",
        "mlflow_experiment",
        "register_alias",
        "register_stage",
    ):
        p.add_argument("--" + name.replace("_", "-"), dest=name)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    args = build_parser().parse_args(argv)
    with StopFlag() as stop:
        return _main(args, stop)


def _main(args: argparse.Namespace, stop: StopFlag) -> int:
    try:
        spec = load_spec(args)
    except SpecUnusable as exc:
        print(
            json.dumps({"status": "failed", "error": {"code": "invalid_job_spec", "message": str(exc), "param": None}}),
            file=sys.stderr,
        )
        return EXIT_USAGE
    except TrainError as exc:
        output = output_hint(args)
        if not output:
            print(json.dumps({"status": "failed", "error": exc.to_dict()}), file=sys.stderr)
            return EXIT_USAGE
        with tempfile.TemporaryDirectory(prefix="ministudio-train-") as staging:
            return _report_failure(Outputs(output, Path(staging)), {"job_id": None}, exc, None)
    if spec.effective_compute.distributed:  # N data-parallel workers: Ray Train, or torch's launcher on SageMaker
        from ministudio_train import launcher

        return launcher.launch(spec, vars(args), stop, args.log_every)
    with tempfile.TemporaryDirectory(prefix="ministudio-train-") as staging:
        out = Outputs(spec.output, Path(staging), spec.model_dir, spec.checkpoint_dir)
        return execute(spec, out, stop, args.log_every, mlflow_registry.RegistrySettings.resolve(vars(args)))


def execute(
    spec: JobSpec,
    out: Outputs,
    stop: StopFlag,
    log_every: int | None = None,
    registry_settings: mlflow_registry.RegistrySettings | None = None,
    retry_errors: bool = False,
) -> int:
    """Train and report; `retry_errors`: an unexpected error is raised (to Ray Train, which restarts the workers
    from the last checkpoint) instead of being reported as the job's failure."""
    started = time.time()
    run = Run(spec, out, stop, log_every)
    base: dict[str, Any] = {"job_id": spec.job_id, "tenant": spec.tenant, "model": spec.model}
    try:
        out.begin_attempt()  # before anything is reported: progress and result carry the attempt's number
        refuse_after_own_failure(out.earlier_result)
        guard_oom(run, run.prepare)
        guard_oom(run, run.train)
        adapter_uri = run.save_final()
    except Cancelled:
        return _report_cancelled(run, out, base, stop)
    except TrainError as exc:
        return _report_failure(out, base, exc, spec.failure_file, run)
    except Exception as exc:  # a bug or an environment fault: still end with a result.json the user can read
        if retry_errors:
            raise
        log.exception("training failed")
        error = TrainError("internal_error", f"{type(exc).__name__}: {exc}"[:1000])
        return _report_failure(out, base, error, spec.failure_file, run)
    st = run.state
    result = {
        **base,
        "status": "succeeded",
        "fine_tuned_model": spec.fine_tuned_model,
        "suffix": spec.suffix,
        "trained_tokens": st.trained_tokens,
        "steps": st.step,
        "epochs": st.epoch,
        "final_loss": st.loss,
        "eval_loss": st.eval_loss,
        "adapter_uri": adapter_uri,
        "checkpoints": st.checkpoints,
        "resumed_from": getattr(run, "resumed_from", None),
        "hyperparameters": run.hyper.as_dict(),
        "truncated_examples": run.truncated,
        "train_seconds": round(st.train_seconds, 3),
        "tokens_per_second": round(st.trained_tokens / st.train_seconds, 1) if st.train_seconds else None,
    }
    if registry_settings is not None:
        result["registry"] = mlflow_registry.publish(registry_settings, result, out.root, started)
    return _finish(out, result, EXIT_OK)


def _report_cancelled(run: Run, out: Outputs, base: dict[str, Any], stop: StopFlag) -> int:
    st = run.state
    if getattr(run, "model", None) is not None and st.step > 0:
        try:
            run.checkpoint(f"step-{st.step}")
        except Exception:  # the cancellation is still reported without it
            log.exception("could not save the cancellation checkpoint")
    reason = signal.Signals(stop.signum).name if stop.signum else "a stop request"
    result = {
        **base,
        "status": "cancelled",
        "message": f"stopped by {reason} at step {st.step}",
        "steps": st.step,
        "epochs": st.epoch,
        "trained_tokens": st.trained_tokens,
        "final_loss": st.loss,
        "checkpoints": st.checkpoints,
    }
    return _finish(out, result, EXIT_OK)


def refuse_after_own_failure(earlier: dict[str, Any]) -> None:
    """A new attempt resumes a run that died (evicted pod, lost node, killed platform: no result.json). One whose
    earlier attempt failed on its own (bad data, out of memory: result.json says why) would fail the same way, so it
    ends at once with that reason: a backend's blind retry (KubeRay's backoffLimit) costs a start, not a run."""
    if earlier.get("status") != "failed":
        return
    found = earlier.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    code, message = str(error.get("code") or "earlier_attempt_failed"), str(error.get("message") or "")
    raise TrainError(code, f"an earlier attempt of this run failed and would again: {message}"[:1000])


def _report_failure(
    out: Outputs, base: dict[str, Any], exc: TrainError, failure_file: str | None, run: Run | None = None
) -> int:
    log.error("job failed: %s (%s)", exc.message, exc.code)
    write_failure_file(failure_file, f"{exc.code}: {exc.message}")
    st = run.state if run else None
    result = {
        **base,
        "status": "failed",
        "error": exc.to_dict(),
        "steps": st.step if st else 0,
        "checkpoints": st.checkpoints if st else [],
    }
    return _finish(out, result, EXIT_FAILED)


def _finish(out: Outputs, result: dict[str, Any], code: int) -> int:
    try:
        if out.last_progress is not None:  # same shape as while running, with the ending status
            out.progress({**out.last_progress, "status": result["status"], "eta_seconds": None}, force=True)
        out.result(result)
    except Exception:
        log.exception("could not write result.json to %s", out.uri)
        return EXIT_UNREPORTED
    log.info("%s: %s", result["status"], out.uri_of("result.json"))
    return code


if __name__ == "__main__":
    sys.exit(main())
