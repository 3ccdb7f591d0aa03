"""Data-parallel training (parallel.py, distributed.py, launcher.py): N workers see each example once per epoch,
train the same adapter as one process on the same global batch, and only rank 0 writes anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from tests.helpers.datasets import chat_rows, read_json, write_jsonl
from tests.helpers.ddp import run_workers

from ministudio_train import batching, launcher
from ministudio_train.cli import EXIT_OK, main
from ministudio_train.distributed import ChiefOutputs, FollowerOutputs
from ministudio_train.parallel import Group
from ministudio_train.spec import JobSpec

# Same data, seed and global batch for one process and for two workers: per-step losses agree to this (float sums in
# another order), and so do the adapters' weights.
LOSS_RTOL, WEIGHT_ATOL = 1e-5, 1e-6


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MINISTUDIO_SAGEMAKER_ROOT", "/nonexistent-sagemaker")
    monkeypatch.delenv("MINISTUDIO_JOB_SPEC", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.mark.parametrize("world", [2, 3])
def test_each_example_is_seen_once_per_epoch_across_the_workers(world: int) -> None:
    for epoch in (1, 2):
        steps = batching.plan_steps(22, 4, epoch, seed=5)
        seen = [i for idx in steps for rank in range(world) for i in Group(rank, world).shard(idx)]
        assert sorted(seen) == list(range(22))  # every example once, none twice
        for idx in steps:  # each step's global batch is the one a single process trains on
            assert sorted(i for r in range(world) for i in Group(r, world).shard(idx)) == sorted(idx)


def test_a_follower_writes_nothing_and_clears_nothing(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text('{"status": "running"}')
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    before = {p: p.read_bytes() for p in tmp_path.rglob("*")}
    out = FollowerOutputs(str(tmp_path), tmp_path / "staging-unused")
    assert out.begin_attempt() == 0
    out.progress({"step": 2}, {"step": 2}, force=True)
    (tmp_path.parent / "adapter-src").mkdir()
    (tmp_path.parent / "adapter-src" / "a.bin").write_bytes(b"x")
    assert out.save_dir(tmp_path.parent / "adapter-src", "adapter") == ""
    out.result({"status": "succeeded"})
    assert {p: p.read_bytes() for p in tmp_path.rglob("*")} == before


def _spec(model: Path, train: Path, out: Path) -> dict[str, Any]:
    return {"job_id": "ftjob-ddp", "model": str(model), "training_file": str(train), "output": str(out), "seed": 3,
            "hyperparameters": {"n_epochs": 1, "batch_size": 4, "validation_split": 0.2, "lora_dropout": 0,
                                "learning_rate_multiplier": 10, "checkpoint_steps": 2}}  # fmt: skip


def _steps(out: Path) -> list[tuple[int, float]]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(line["step"], line["loss"]) for line in lines if line["tokens_per_second"] is not None]


def _one_process_then_two_workers(model: Path, tmp_path: Path, compute: dict[str, Any]) -> tuple[Path, Path, Path]:
    """20 examples (16 to train in 4 steps of 4, 4 to validate) trained by one process, then by two gloo workers
    started as torch's launcher starts them (a SageMaker job's path), rank 1 pointed at an output of its own that
    must stay empty. Checks that rank 1 wrote nothing at all and rank 0 what one process writes; returns (the
    training file, one process's output, the workers' output)."""
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(20))
    single, shared, rank1 = tmp_path / "single", tmp_path / "shared", tmp_path / "rank1"
    assert main(["--spec-json", json.dumps(_spec(model, train, single)), "--log-every", "1"]) == EXIT_OK
    rank1.mkdir()
    two = {"compute": {"workers": 2, **compute}}
    run_workers([{**_spec(model, train, shared), **two}, {**_spec(model, train, rank1), **two}])
    assert list(rank1.iterdir()) == []
    names = sorted(p.relative_to(shared).as_posix() for p in shared.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(single).as_posix() for p in single.rglob("*") if p.is_file())
    return train, single, shared


def test_two_workers_train_what_one_process_trains_and_only_rank_0_writes(tiny_model: Path, tmp_path: Path) -> None:
    _, single, shared = _one_process_then_two_workers(tiny_model, tmp_path, {})
    # The loss curve (each step's loss over the whole global batch) and the validation loss agree
    one, two = _steps(single), _steps(shared)
    assert [s for s, _ in one] == [s for s, _ in two] == [1, 2, 3, 4]
    for (_, a), (_, b) in zip(one, two, strict=True):
        assert b == pytest.approx(a, rel=LOSS_RTOL)
    result_one, result_two = read_json(single / "result.json"), read_json(shared / "result.json")
    assert result_two["status"] == "succeeded" and result_two["trained_tokens"] == result_one["trained_tokens"]
    assert result_two["eval_loss"] == pytest.approx(result_one["eval_loss"], rel=LOSS_RTOL)
    left = load_file(str(single / "adapter" / "adapter_model.safetensors"))
    right = load_file(str(shared / "adapter" / "adapter_model.safetensors"))
    for key in left:
        torch.testing.assert_close(right[key], left[key], rtol=0, atol=WEIGHT_ATOL)


def test_sagemaker_host_list_makes_the_torch_launcher_command(tmp_path: Path) -> None:
    spec = JobSpec(job_id="ftjob-sm", model="m", training_file="/d", output="/o",
                   compute={"workers": 2, "gpus_per_worker": 4})  # fmt: skip
    env = {"SM_HOSTS": '["algo-2", "algo-1"]', "SM_CURRENT_HOST": "algo-2"}
    hosts, current = launcher.sagemaker_hosts(env) or ([], "")
    argv = launcher.torchrun_command(spec, hosts, current, ["train"])
    assert argv[1:3] == ["-m", "torch.distributed.run"] and argv[-3:] == ["-m", "ministudio_train.cli", "train"]
    assert {"--nnodes=2", "--node-rank=1", "--nproc-per-node=4", "--master-addr=algo-1"} <= set(argv)
    # Without the toolkit's variables, SageMaker's resourceconfig.json says the same
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]}))
    assert launcher.sagemaker_hosts({"MINISTUDIO_SAGEMAKER_ROOT": str(tmp_path)}) == (["algo-1", "algo-2"], "algo-1")
    assert launcher.sagemaker_hosts({"MINISTUDIO_SAGEMAKER_ROOT": str(tmp_path / "none")}) is None


def test_the_driver_reports_a_run_its_workers_could_not_finish(tmp_path: Path) -> None:
    # Given an output whose latest attempt (2) died without a result.json, as when Ray Train's restarts run out
    (tmp_path / "attempts").mkdir()
    (tmp_path / "attempts" / "latest.json").write_text('{"attempt": 2}')
    view = FollowerOutputs(str(tmp_path), tmp_path / "unused")
    assert view.status() is None
    view.final({"job_id": "ftjob-x", "status": "failed", "error": {"code": "internal_error", "message": "m"}})
    # Then result.json is that attempt's, so the control plane does not take it for an earlier attempt's
    result = read_json(tmp_path / "result.json")
    assert (result["status"], result["attempt"]) == ("failed", 2) and view.status() == "failed"


def test_rank_0_says_how_often_the_workers_were_restarted(tmp_path: Path) -> None:
    out = ChiefOutputs(str(tmp_path), tmp_path / "staging")
    out.progress({"step": 1}, force=True)
    assert "worker_restarts" not in read_json(tmp_path / "progress.json")
    out.restarts = 2
    out.progress({"step": 3}, force=True)
    assert read_json(tmp_path / "progress.json")["worker_restarts"] == 2


# FSDP shards the weights and reduce-scatters the gradients: the same sums in yet another order, so a looser bound.
FSDP_LOSS_RTOL, FSDP_WEIGHT_ATOL = 1e-4, 1e-5


def test_two_fsdp_workers_train_what_one_process_trains_and_resume(tiny_model: Path, tmp_path: Path) -> None:
    # Two workers sharding the model (FSDP over gloo): the same losses and adapter as one process
    train, single, shared = _one_process_then_two_workers(tiny_model, tmp_path, {"strategy": "fsdp"})
    fsdp = {"compute": {"workers": 2, "strategy": "fsdp"}}
    one, two = _steps(single), _steps(shared)
    assert [s for s, _ in two] == [1, 2, 3, 4]
    for (_, a), (_, b) in zip(one, two, strict=True):
        assert b == pytest.approx(a, rel=FSDP_LOSS_RTOL)
    eval_loss = read_json(single / "result.json")["eval_loss"]
    assert read_json(shared / "result.json")["eval_loss"] == pytest.approx(eval_loss, rel=FSDP_LOSS_RTOL)
    left = load_file(str(single / "adapter" / "adapter_model.safetensors"))
    right = load_file(str(shared / "adapter" / "adapter_model.safetensors"))
    assert sorted(right) == sorted(left)
    for key in left:
        torch.testing.assert_close(right[key], left[key], rtol=0, atol=FSDP_WEIGHT_ATOL)
    # And the checkpoint holds AdamW's full state (both ranks' shards, gathered), not one shard of it
    state = torch.load(shared / "checkpoints" / "step-2" / "trainer_state.pt", weights_only=False)
    single_state = torch.load(single / "checkpoints" / "step-2" / "trainer_state.pt", weights_only=False)
    assert len(state["optimizer"]["state"]) == len(single_state["optimizer"]["state"])
    # When the run is resumed from step 2 (the later checkpoints and the adapter gone), sharded again
    import shutil

    for name in ("epoch-1", "adapter", "result.json"):
        shutil.rmtree(shared / name, ignore_errors=True) if name != "result.json" else (shared / name).unlink()
    shutil.rmtree(shared / "checkpoints" / "epoch-1")
    # (both ranks read the one output, as they do on every backend: loading a checkpoint into shards is collective)
    run_workers([{**_spec(tiny_model, train, shared), **fsdp}] * 2)
    # Then it goes on from step 3 and ends with the uninterrupted run's adapter
    assert [s for s, _ in _steps(shared)] == [1, 2, 3, 4]
    resumed = load_file(str(shared / "adapter" / "adapter_model.safetensors"))
    for key in left:
        torch.testing.assert_close(resumed[key], left[key], rtol=0, atol=FSDP_WEIGHT_ATOL)
