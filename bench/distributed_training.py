"""Distributed fine-tuning: real tokens/s of N data-parallel Ray Train workers against one trainer process.

    .venv/bin/python bench/distributed_training.py [--workers 2] [--examples 64] [--batch-size 8] [--gpus]
                                                   [--random-model] [--strategy fsdp] [--goal 1.6]

Both sides run `ministudio-train` on the same job: SmolLM2-135M-Instruct (the catalogue's packaged model, converted
once and cached; `--random-model` uses random weights of its shape), LoRA r=8 on q/k/v/o, the same chat examples,
seed and global batch (`--batch-size` examples a step, dealt out across the workers), one epoch, fp32 on CPU. The
single process runs with one intra-op thread; each Ray Train worker gets one CPU, so Ray gives it one thread too.
`--gpus` gives each side one GPU per process instead (1 GPU against N), on a machine that has them. `--strategy fsdp`
shards the model over the N workers (the single process has nothing to shard); the trainer's log says how much of
the model each worker holds.

Throughput is what the trainer itself reports in result.json: real (non-pad) tokens of the whole global batch over
rank 0's time in training steps (gradient all-reduces included; model loading, Ray's start and checkpoints excluded).
Scaling efficiency = speedup / N. Goal: >= 1.6x at 2 workers where each has a core of its own; on a machine whose
cores are shared with other jobs the figure says so (the load average is printed). Exits 1 when the goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chat_dataset import write_dataset  # bench/, beside this script

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def model_ref(random_weights: bool, workdir: Path) -> str:
    from ministudio_common import loader

    real = loader.resolve(MODEL)  # converted once, then cached
    if not random_weights:
        return str(real)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    dest = workdir / "random-smollm2-shape"
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(real))).save_pretrained(str(dest))
    AutoTokenizer.from_pretrained(str(real)).save_pretrained(str(dest))
    return str(dest)


def train(
    model: str, data: Path, out: Path, workers: int, gpus: bool, batch_size: int, strategy: str
) -> dict[str, Any]:
    spec = {
        "job_id": f"ftjob-bench-{workers}",
        "model": model,
        "training_file": str(data),
        "output": str(out),
        "seed": 1,
        "hyperparameters": {
            "n_epochs": 1,
            "batch_size": batch_size,
            "validation_split": 0,
            "max_seq_len": 128,
            "checkpoint_steps": 10_000,
        },
        "compute": {"workers": workers, "gpus_per_worker": 1 if gpus else 0, "strategy": strategy},
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    trainer = Path(sys.executable).with_name("ministudio-train")
    started = time.monotonic()
    proc = subprocess.run([str(trainer), "--spec-json", json.dumps(spec)], env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{workers} worker(s) failed with exit {proc.returncode}:\n{proc.stderr[-3000:]}")
    for line in proc.stderr.splitlines():
        if "FSDP over" in line:
            print(line[line.index("FSDP over") :])
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    result["wall_seconds"] = time.monotonic() - started
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--gpus", action="store_true", help="one GPU per process (1 GPU against --workers GPUs)")
    parser.add_argument("--random-model", action="store_true")
    parser.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp")
    parser.add_argument("--goal", type=float, default=1.6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        work = Path(tmp)
        model = model_ref(args.random_model, work)
        data = write_dataset(work / "train.jsonl", args.examples, min_words=8)
        one = train(model, data, work / "one", 1, args.gpus, args.batch_size, "ddp")
        many = train(model, data, work / "many", args.workers, args.gpus, args.batch_size, args.strategy)
    unit = "GPU" if args.gpus else "CPU worker (1 thread)"
    sharded = ", FSDP" if args.strategy == "fsdp" else ""
    for label, r in ((f"1 {unit}", one), (f"{args.workers} x {unit}{sharded}", many)):
        print(f"{label:>28}: {r['tokens_per_second']:8.1f} real tokens/s  ({r['trained_tokens']} tokens, "
              f"{r['steps']} steps, loss {r['final_loss']:.4f}, {r['wall_seconds']:.0f} s with start-up)")  # fmt: skip
    speedup = many["tokens_per_second"] / one["tokens_per_second"]
    print(f"speedup {speedup:.2f}x, scaling efficiency {speedup / args.workers:.0%} "
          f"(cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    print(f"final loss: 1 process {one['final_loss']:.6f}, {args.workers} workers {many['final_loss']:.6f}")
    ok = speedup >= args.goal
    print(f"goal >= {args.goal}x: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
