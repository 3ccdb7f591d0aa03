"""A standby inference server for the local backend (LOCAL_SERVING_STANDBY): one `ministudio-serve` process that has
done its imports (ministudio_serve/standby.py) and waits to become the next server started, so a wake-up from zero
costs the model's load rather than Python's imports too. It is started once a server is ready (never beside a
start, which it would slow), by the backend's spawner thread (PR_SET_PDEATHSIG ties it there, like every server),
and handed a command line by `take`; a standby not yet warm is passed over (the server then starts as usual)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from functions.compute import subprocs

Proc = subprocess.Popen[bytes]


class Standby:
    def __init__(self, serving_dir: Path) -> None:
        self.folder = serving_dir / ".standby"
        self.proc: Proc | None = None

    def take(self, argv: list[str], folder: Path) -> Proc | None:
        """The warm standby, told to become the server `argv` (its command dropped) in `folder`; None if none."""
        proc, warm = self.proc, self.folder / "warm"
        if proc is None or proc.poll() is not None or not warm.exists():
            return None
        self.proc = None
        warm.unlink()
        where = folder.resolve()  # the standby runs in its own folder: relative paths would not hold there
        job = {"argv": argv[1:], "cwd": str(where), "log": str(where / "server.log")}
        (self.folder / "job.tmp").write_text(json.dumps(job))
        (self.folder / "job.tmp").rename(self.folder / "job.json")
        return proc

    def refill(self, env: dict[str, str]) -> None:
        """Start a standby when none is waiting (call it on the spawner thread)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in ("warm", "job.json", "job.tmp"):
            (self.folder / leftover).unlink(missing_ok=True)
        argv = [sys.executable, "-m", "ministudio_serve.standby", str(self.folder)]
        self.proc = subprocs.spawn(argv, self.folder, "standby.log", env)
