"""The training run: data → LoRA model → packed steps with AdamW and warmup → checkpoints → adapter.

A custom loop rather than transformers.Trainer: it packs each step's examples without padding, computes logits
only where a token's loss weight is non-zero, and reports progress in the shape the control plane reads.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import get_scheduler

from ministudio_train import batching, data, hyper, model, parallel, resume, sharding
from ministudio_train.errors import Cancelled, TrainError, is_out_of_memory, out_of_memory
from ministudio_train.outputs import Outputs
from ministudio_train.spec import JobSpec

log = logging.getLogger("ministudio_train")
ROW_TOKENS = 2048  # packed row capacity: bounds the block-diagonal attention mask at any batch size


@dataclass
class State:
    step: int = 0
    epoch: int = 0
    trained_tokens: int = 0
    train_seconds: float = 0.0
    loss: float | None = None
    eval_loss: float | None = None
    checkpoints: list[str] = field(default_factory=list)


# The hyperparameter's names → transformers' schedules (each with linear warmup, as the HF Trainer runs them).
SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


class Run:
    def __init__(self, spec: JobSpec, out: Outputs, stop: Callable[[], bool], log_every: int | None = None) -> None:
        self.spec, self.out, self.stop, self.log_every = spec, out, stop, log_every
        self.group = parallel.Group.current()  # rank 0 of N data-parallel workers alone writes (see parallel.py)
        self.state = State()
        self.position = resume.Position()
        self.trainers: dict[str, Any] = {}
        self.sharded: sharding.Sharded | None = None  # FSDP (compute.strategy "fsdp"), see sharding.py

    def _check_stop(self) -> None:
        if self.stop():
            raise Cancelled()

    def prepare(self) -> None:
        """Everything before the first step; failures here are the user's to fix (file, model, hyperparameters)."""
        spec = self.spec
        hyper.resolve(spec.hyperparameters)  # fail on a bad value before reading data or loading the model
        train = data.read_examples(spec.training_file, "training_file")
        if spec.validation_file:
            valid = data.read_examples(spec.validation_file, "validation_file")
        else:
            train, valid = data.split_validation(train, hyper.resolve(spec.hyperparameters).validation_split, spec.seed)
        hyper.resolve(spec.hyperparameters, n_train=len(train))  # batch size vs examples, still before the model
        self._check_stop()
        model_dir = model.model_dir_for(spec.model)
        self.hyper = hyper.resolve(spec.hyperparameters, len(train), model.context_length(model_dir))
        self.tokenizer = model.load_tokenizer(model_dir, spec.model)
        if any(e.messages for e in train + valid) and not getattr(self.tokenizer, "chat_template", None):
            raise TrainError(
                "invalid_training_file",
                f"{spec.model} has no chat template: use prompt/completion lines for it",
                "training_file",
            )
        h = self.hyper
        self.train_set = self._encode(train, "training_file")
        self.valid_set = self._encode(valid, "validation_file" if spec.validation_file else "training_file")
        self.truncated = sum(e.truncated for e in self.train_set)
        if self.truncated:
            log.warning("%d training examples were cut to max_seq_len=%d tokens", self.truncated, h.max_seq_len)
        self._check_stop()
        self.precision = model.pick_precision()
        torch.manual_seed(spec.seed)
        shard = sharding.wanted(spec.effective_compute.strategy, self.group)  # then FSDP places the weights
        self.model = model.load_lora_model(model_dir, spec.model, h, self.precision, place=not shard)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.tokenizer.eos_token_id or 0)
        self.row_tokens = max(h.max_seq_len, ROW_TOKENS)
        filler = batching.collate(self.train_set[:1], self.row_tokens, self.pad_id)
        self.sharded = sharding.setup(self.group, self.model, filler, self.precision.device) if shard else None
        self.steps_per_epoch = math.ceil(len(self.train_set) / h.batch_size)
        total = h.n_epochs * self.steps_per_epoch
        self.total_steps = min(total, h.max_steps) if h.max_steps else total
        log.info(
            "%d training / %d validation examples, %d epochs x %d steps, batch %d, lr %.2e on %s",
            len(self.train_set),
            len(self.valid_set),
            h.n_epochs,
            self.steps_per_epoch,
            h.batch_size,
            h.learning_rate,
            self.precision.device,
        )

    def _encode(self, examples: list[data.Example], param: str) -> list[batching.Encoded]:
        encoded = []
        for example in examples:
            try:
                encoded.append(batching.encode(self.tokenizer, example, self.hyper.prompt_loss_weight,
                                               self.hyper.max_seq_len))  # fmt: skip
            except Exception as exc:  # the chat template refused it (role order, unknown role...)
                raise TrainError(f"invalid_{param}", f"line {example.line}: the chat template of {self.spec.model} "
                                 f"rejects this conversation: {exc}", param) from None  # fmt: skip
        return encoded

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.precision.device.type, dtype=self.precision.autocast)

    def _batches(
        self, examples: list[batching.Encoded], epoch: int, shuffle: bool, skip: int = 0
    ) -> Iterator[batching.Batch | None]:
        bs = self.hyper.batch_size
        steps = (
            batching.plan_steps(len(examples), bs, epoch, self.spec.seed)
            if shuffle
            else [list(range(i, min(i + bs, len(examples)))) for i in range(0, len(examples), bs)]
        )
        for idx in steps[skip:]:  # this worker's share of each step (all of it with one worker), None if empty
            mine = self.group.shard(idx)
            yield batching.collate([examples[i] for i in mine], self.row_tokens, self.pad_id) if mine else None

    def evaluate(self) -> float | None:
        if not self.valid_set:
            return None
        self.model.eval()
        total, weight = 0.0, 0.0
        with torch.no_grad(), self._autocast():
            for batch in self._batches(self.valid_set, 0, shuffle=False):
                self._check_stop()
                w = float(batch.weights.sum()) if batch is not None else 0.0
                loss = parallel.share_loss(self.model, batch, self.precision.device, self.sharded)
                total += float(loss) * w if loss is not None else 0.0
                weight += w
        total, weight = self.group.sum([total, weight])
        self.model.train()
        return total / weight if weight else None

    def train(self) -> State:
        h, st = self.hyper, self.state
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=h.learning_rate, weight_decay=0.0)
        # Rounded down: transformers' warmup starts at a learning rate of 0, so a short run (< 1/ratio steps) would
        # spend a whole step of its few learning nothing; a long one warms up as the HF Trainer does.
        warmup = int(h.warmup_ratio * self.total_steps)
        scheduler = get_scheduler(SCHEDULES[h.lr_scheduler], optimizer, warmup, self.total_steps)
        scaler = torch.amp.GradScaler("cuda") if self.precision.grad_scaling else None
        held = sharding.FullOptimizer(self.model, optimizer) if self.sharded else optimizer
        self.trainers = {"optimizer": held, "scheduler": scheduler, "scaler": scaler}
        start = self._resume()
        if not self.sharded:  # the workers start from rank 0's weights, as DDP's wrapping makes them
            self.group.broadcast(params)
        log_every = self.log_every or max(1, self.total_steps // 200)
        self.model.train()
        self._report(force=True, line=False)
        window_tokens, window_start = 0, time.perf_counter()
        for epoch in range(start.epoch, h.n_epochs + 1):
            st.epoch = epoch
            skip = start.batch if epoch == start.epoch else 0
            for index, batch in enumerate(self._batches(self.train_set, epoch, True, skip), start=skip + 1):
                if st.step >= self.total_steps:
                    break
                self._check_stop()
                started = time.perf_counter()
                st.loss, tokens = parallel.step(self.group, self.model, batch, self._autocast, self.precision.device,
                                                params, optimizer, scaler, self.sharded)  # fmt: skip
                scheduler.step()
                st.step += 1
                st.trained_tokens += tokens
                st.train_seconds += time.perf_counter() - started
                window_tokens += tokens
                self.position = resume.Position(epoch, index)
                if st.step % log_every == 0 or st.step == self.total_steps:
                    elapsed = time.perf_counter() - window_start
                    self._report(
                        tokens_per_second=window_tokens / elapsed if elapsed else None,
                        lr=float(scheduler.get_last_lr()[0]),
                    )
                    window_tokens, window_start = 0, time.perf_counter()
                if st.step % h.checkpoint_steps == 0 and index < self.steps_per_epoch and st.step < self.total_steps:
                    self.checkpoint(f"step-{st.step}")  # not at an epoch's end: that one follows the evaluation
            st.eval_loss = self.evaluate()
            finished_epoch = st.step == epoch * self.steps_per_epoch
            if finished_epoch:
                self.position = resume.Position(epoch + 1, 0)
            self._report(force=True, lr=float(scheduler.get_last_lr()[0]))  # first: the checkpoint keeps its line
            self.checkpoint(f"epoch-{epoch}" if finished_epoch else f"step-{st.step}")
            window_tokens, window_start = 0, time.perf_counter()  # eval and checkpoint time is not training speed
            if st.step >= self.total_steps:
                break
        return st

    def _resume(self) -> resume.Position:
        position, self.resumed_from = resume.restore(self)
        return position

    def _signature(self) -> str:
        hyperparameters = {k: v for k, v in self.hyper.as_dict().items() if k != "checkpoint_steps"}
        return resume.signature({"job_id": self.spec.job_id, "seed": self.spec.seed, "model": self.spec.model,
                                 "n_train": len(self.train_set), "hyperparameters": hyperparameters})  # fmt: skip

    def _report(
        self, tokens_per_second: float | None = None, lr: float | None = None, force: bool = False, line: bool = True
    ) -> None:
        st = self.state
        rate = st.step / st.train_seconds if st.train_seconds else None
        eta = (self.total_steps - st.step) / rate if rate else None
        progress = {
            "status": "running",
            "job_id": self.spec.job_id,
            "step": st.step,
            "total_steps": self.total_steps,
            "epoch": st.epoch,
            "loss": st.loss,
            "eval_loss": st.eval_loss,
            "learning_rate": lr if lr is not None else self.hyper.learning_rate,
            "tokens_per_second": round(tokens_per_second, 1) if tokens_per_second else None,
            "trained_tokens": st.trained_tokens,
            "eta_seconds": round(eta, 1) if eta is not None else None,
        }
        metrics = {k: v for k, v in progress.items() if k not in ("status", "job_id")} if st.step and line else None
        self.out.progress(progress, metrics, force=force)
        if st.step:
            log.info(
                "step %d/%d epoch %d loss %.4f tok/s %s",
                st.step,
                self.total_steps,
                st.epoch,
                st.loss or 0.0,
                progress["tokens_per_second"],
            )

    def checkpoint(self, name: str) -> str:
        """Written in a temporary folder, completed with its COMPLETE marker, then renamed into place (by rank 0)."""
        weights = self.sharded.gather(self.trainers) if self.sharded else None  # every rank takes part
        if not self.group.chief:
            return ""
        st, folder = self.state, self.out.root / "checkpoints"
        target, tmp = folder / name, folder / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_adapter(self.model, self.tokenizer, tmp, self.spec.model, self._adapter_meta(), weights)
        uri = self.out.uri_of(f"checkpoints/{name}") + ("/" if self.out.remote else "")
        checkpoints = st.checkpoints if uri in st.checkpoints else [*st.checkpoints, uri]
        record = {"step": st.step, "epoch": self.position.epoch, "batch": self.position.batch,
                  "signature": self._signature(), "attempt": self.out.attempt, "loss": st.loss,
                  "eval_loss": st.eval_loss, "trained_tokens": st.trained_tokens, "train_seconds": st.train_seconds,
                  "checkpoints": checkpoints}  # fmt: skip
        resume.save(tmp, record, self.trainers, self.out.root / "metrics.jsonl")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        self.out.save_dir(target, f"checkpoints/{name}")
        st.checkpoints = checkpoints
        return uri

    def save_final(self) -> str:
        weights = self.sharded.gather(self.trainers) if self.sharded else None
        if not self.group.chief:
            return ""
        target = self.out.root / "adapter"
        model.save_adapter(self.model, self.tokenizer, target, self.spec.model, self._adapter_meta(), weights)
        return self.out.save_dir(target, "adapter")

    def _adapter_meta(self) -> dict[str, Any]:
        spec, st = self.spec, self.state
        return {"base_model": spec.model, "job_id": spec.job_id, "tenant": spec.tenant,
                "fine_tuned_model": spec.fine_tuned_model, "step": st.step, "epoch": st.epoch,
                "hyperparameters": self.hyper.as_dict()}  # fmt: skip

    def oom(self, exc: BaseException) -> TrainError:
        h = getattr(self, "hyper", None)
        return out_of_memory(h.batch_size if h else 0, h.max_seq_len if h else 0, str(exc))


def guard_oom(run: Run, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (RuntimeError, MemoryError) as exc:
        if is_out_of_memory(exc):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise run.oom(exc) from exc
        raise
