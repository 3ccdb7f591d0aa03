"""A stand-in for `ministudio-train` that the compute backends start as they start the real one (`--spec-json`), and
that does what the run's hyperparameters (over the defaults written into the script) tell it:

- pid_file: append its pid there; pid_dir: write its pid to pid_dir/<job_id>;
- order_file: append hyperparameter `name` there (start order);
- child_pid_file: start a worker that ignores SIGTERM (only a group SIGKILL removes it), its pid written there;
- sleep: seconds to run; wait_for: run until that file exists;
- write_result: put result.json under the spec's output, as the real trainer does at the end;
- exit: the exit code;
- ignore_term: ignore SIGTERM; otherwise SIGTERM "checkpoints" (checkpoint_seconds) and exits 0.

It prints `training <job_id>`, `env {...}` (what it inherited), `ready endpoint=<AWS_ENDPOINT_URL>` once its signal
handlers and worker are in place, then `last words` before it exits."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

SCRIPT = textwrap.dedent(
    """
    import json, os, resource, signal, subprocess, sys, time
    spec = json.loads(sys.argv[sys.argv.index("--spec-json") + 1])
    hp = {**DEFAULTS, **(spec.get("hyperparameters") or {})}
    print("training", spec["job_id"], flush=True)
    def on_term(signum, frame):
        time.sleep(hp.get("checkpoint_seconds", 0))
        print("checkpoint saved", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN if hp.get("ignore_term") else on_term)
    if hp.get("pid_file"):
        with open(hp["pid_file"], "a") as fh:
            fh.write(f"{os.getpid()}\\n")
    if hp.get("pid_dir"):
        with open(os.path.join(hp["pid_dir"], spec["job_id"]), "w") as fh:
            fh.write(str(os.getpid()))
    if hp.get("order_file"):
        with open(hp["order_file"], "a") as fh:
            fh.write(hp["name"] + "\\n")
    seen = {"port": os.environ.get("PORT"), "omp": os.environ.get("OMP_NUM_THREADS"),
            "mkl": os.environ.get("MKL_NUM_THREADS"), "nice": os.nice(0), "cwd": os.getcwd(),
            "rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0]}
    print("env " + json.dumps(seen), flush=True)
    if hp.get("child_pid_file"):
        code = ("import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)")
        subprocess.Popen([sys.executable, "-c", code, hp["child_pid_file"]])
        while not os.path.exists(hp["child_pid_file"]):
            time.sleep(0.01)
    print("ready endpoint=" + str(os.environ.get("AWS_ENDPOINT_URL")), flush=True)
    deadline = time.monotonic() + hp.get("sleep", 0)
    while time.monotonic() < deadline or (hp.get("wait_for") and not os.path.exists(hp["wait_for"])):
        time.sleep(0.02)
    if hp.get("write_result"):
        import boto3
        bucket, _, prefix = spec["output"].removeprefix("s3://").partition("/")
        result = {"status": "succeeded", "trained_tokens": 42, "adapter_uri": spec["output"] + "adapter/"}
        boto3.client("s3").put_object(Bucket=bucket, Key=prefix + "result.json", Body=json.dumps(result).encode())
    print("last words", flush=True)
    sys.exit(hp.get("exit", 0))
    """
)


def write_fake_trainer(path: Path, **defaults: Any) -> Path:
    """The script at `path`; `defaults` apply to every run it makes, under the run's own hyperparameters."""
    path.write_text(f"DEFAULTS = {defaults!r}\n{SCRIPT}")
    return path
