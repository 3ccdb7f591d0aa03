"""Resumable checkpoints: everything a step boundary needs so that a run that died goes on where it stopped.

A checkpoint folder holds the adapter (as every checkpoint does) plus `trainer_state.pt` (optimizer, scheduler,
gradient scaler, the python/numpy/torch RNG states), `trainer_state.json` (step, epoch, the number of batches of
that epoch's seeded order already trained, the running totals) and the metrics lines so far; the `COMPLETE`
marker is written last. Resuming loads the newest complete checkpoint whose signature (job, seed, data size,
hyperparameters) matches this run's: the same seed gives the same data order, so the run continues with the same
step count, the same batches and, on the same device, the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ministudio_train.errors import TrainError
from ministudio_train.outputs import COMPLETE

log = logging.getLogger("ministudio_train")
STATE_PT, STATE_JSON, METRICS = "trainer_state.pt", "trainer_state.json", "metrics.jsonl"


@dataclass(frozen=True)
class Position:
    epoch: int = 1  # the epoch being trained, from 1
    batch: int = 0  # batches of that epoch's order already trained


def signature(values: dict[str, Any]) -> str:
    """What must match for a checkpoint to continue this run (not checkpoint_steps: changing it is harmless)."""
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    numpy = sys.modules.get("numpy")  # only if something loaded it: never imported for this alone
    if numpy is not None:
        states["numpy"] = numpy.random.get_state()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy = sys.modules.get("numpy")
    if "numpy" in states and numpy is not None:
        numpy.random.set_state(states["numpy"])


def save(folder: Path, record: dict[str, Any], trainers: dict[str, Any], metrics: Path) -> None:
    """Add the resumable state to a checkpoint folder that holds the adapter, then its COMPLETE marker."""
    blob = {name: obj.state_dict() if obj is not None else None for name, obj in trainers.items()}
    torch.save({**blob, "rng": rng_states()}, folder / STATE_PT)
    (folder / STATE_JSON).write_text(json.dumps(record, indent=2))
    if metrics.is_file():
        shutil.copy2(metrics, folder / METRICS)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    marker = {**{k: record[k] for k in ("step", "epoch", "batch", "signature", "attempt")}, "files": files}
    (folder / COMPLETE).write_text(json.dumps({**marker, "written_at": time.time()}))


def newest(markers: dict[str, dict[str, Any]], wanted: str) -> str | None:
    """The name of the furthest complete checkpoint of this run (by step, then position, then time), or None."""
    fits = [(m.get("step", -1), m.get("epoch", 0), m.get("written_at", 0), n) for n, m in markers.items()
            if m.get("signature") == wanted]  # fmt: skip
    return max(fits)[3] if fits else None


def load(folder: Path, model: Any, trainers: dict[str, Any], sharded: Any = None) -> dict[str, Any]:
    """Put the checkpoint's adapter weights, optimizer, scheduler, scaler and RNG states back; return its record.
    `sharded`: a sharding.Sharded, which loads the adapter into an FSDP model."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter = load_file(str(folder / "adapter_model.safetensors"))
    sharded.load_adapter(adapter) if sharded is not None else set_peft_model_state_dict(model, adapter)
    blob = torch.load(folder / STATE_PT, map_location="cpu", weights_only=False)  # our own file, from our output
    for name, obj in trainers.items():
        if obj is not None and blob.get(name) is not None:
            obj.load_state_dict(blob[name])
    set_rng_states(blob["rng"])
    record: dict[str, Any] = json.loads((folder / STATE_JSON).read_text())
    return record


def metrics_until(folder: Path, step: int) -> bytes:
    """The checkpoint's metrics lines up to its step (nothing of the steps the dead run did after it)."""
    path = folder / METRICS
    if not path.is_file():
        return b""
    kept = [line for line in path.read_text().splitlines() if line and int(json.loads(line).get("step", 0)) <= step]
    return "".join(line + "\n" for line in kept).encode()


def restore(run: Any) -> tuple[Position, str | None]:
    """Continue `run` (a train.Run, its optimizer built) from the newest complete checkpoint an earlier attempt
    of it left under its output: (where in the data to go on, the checkpoint's name), or a fresh start."""
    markers = run.out.complete_checkpoints()
    name = run.group.chief_says(newest(markers, run._signature()))
    if name is not None and name not in markers:
        raise TrainError("internal_error", f"checkpoint {name!r} is not under this worker's output", "output")
    if name is None:
        if markers:
            log.warning("%d checkpoint(s) under the output belong to another run: starting afresh", len(markers))
        return Position(), None
    folder = run.out.fetch_checkpoint(name, markers[name])
    record = load(folder, run.model, run.trainers, run.sharded)
    st = run.state
    st.step, st.epoch, st.loss, st.eval_loss = record["step"], record["epoch"], record["loss"], record["eval_loss"]
    st.trained_tokens, st.train_seconds = record["trained_tokens"], record["train_seconds"]
    st.checkpoints = list(record["checkpoints"])
    run.out.restore_metrics(metrics_until(folder, st.step))
    log.info("resuming from checkpoint %s at step %d (written by attempt %s)", name, st.step, record.get("attempt"))
    return Position(record["epoch"], record["batch"]), name
