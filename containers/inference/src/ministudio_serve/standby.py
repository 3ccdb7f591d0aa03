"""`python -m ministudio_serve.standby FOLDER`: a server started ahead of need, for fast wake-ups from zero.

Most of a CPU server's start is Python importing torch, transformers and the app (seconds on a small machine;
the weights of a small model load in about one). A standby does all of that first, then waits for its job: the local
serving backend (functions/compute/local_serving_standby.py) writes `job.json` into FOLDER (atomically, by rename)
with the server's command line, working folder and log file, and the standby becomes that server, as
`ministudio-serve ARGS...` would have been, in the same process (same pid, process group and environment).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

POLL_SECONDS = 0.02
JOB = "job.json"


def _warm() -> None:
    """Import what a server's start imports, including what transformers loads lazily for a causal LM."""
    import importlib

    lazy = ("modeling_utils", "core_model_loading", "masking_utils", "modeling_layers", "activations", "generation")
    for name in ("ministudio_serve.app", "ministudio_serve.cli", *(f"transformers.{m}" for m in lazy)):
        importlib.import_module(name)
    for name in ("models.auto.modeling_auto", "models.llama.modeling_llama"):  # llama: SmolLM2's architecture
        importlib.import_module(f"transformers.{name}")


def main(folder: str) -> None:
    _warm()
    job_file = Path(folder) / JOB
    (Path(folder) / "warm").write_text(str(os.getpid()))  # the backend takes only a standby that is ready
    while not job_file.exists():
        time.sleep(POLL_SECONDS)
    job = json.loads(job_file.read_text())
    job_file.unlink()
    os.chdir(job["cwd"])
    log = os.open(job["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    from ministudio_serve import cli

    cli.main(list(job["argv"]))


if __name__ == "__main__":
    main(sys.argv[1])
