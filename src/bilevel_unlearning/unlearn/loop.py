"""One unlearning loop for every gradient method: forget loss + retain loss + update rule.

Per optimizer step, over this process's micro-batches of the global batch (see
``runtime.batch_layout``: the config's batch is global, the split depends on the processes):
  1. the forget loss is back-propagated through every micro-batch; the accumulated gradient is
     copied into the one extra buffer g_F;
  2. the retain loss is back-propagated through the same micro-batches, into .grad (g_R);
  3. the rule combines them and writes the direction into .grad (in place), then the optimizer
     steps. Clipping, if configured, applies to the combined direction.
g_F and g_R are each accumulated over all micro-batches before they are combined (the authors'
code combined only the last micro-batch's). Under DDP each backward pass's last micro-batch
all-reduces, so both gradients are global before the rule sees them.

Device: the model, the frozen reference and reinforced models and every batch are placed
explicitly on one device, decided by ``runtime.compute_device`` (the process's GPU, else the
CPU); accelerate is not relied on to move anything.

Task Vector (forget loss nll with `negation`) trains the same way; each checkpoint then holds
theta_0 - negation * (theta - theta_0), and the trained weights are kept for resuming.

Each epoch ends with an atomic checkpoint folder (weights + optimizer/scheduler state) and the
step log up to that point; a run resumes from the last complete checkpoint and gives the same
weights as an uninterrupted run, because each epoch's data order comes from (seed, epoch).
A checkpoint records the fingerprint of everything that made it (method, settings, seed,
precision, the start model's and data's checksums, the training code's digest and the CPU
kernel pins, LOOP_VERSION); a run resumes only from a
checkpoint with its own fingerprint and otherwise discards the checkpoints, saying why, and
starts from the start model. The number of processes is not part of it: the global batch
gives the same updates on any count.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bilevel_unlearning.io import write_text
from bilevel_unlearning.models.train import adamw, schedule_factor
from bilevel_unlearning.runtime import BatchLayout, batch_layout, compute_device, compute_dtype
from bilevel_unlearning.unlearn import sharding
from bilevel_unlearning.unlearn.checkpoints import (
    CHECKPOINTS,
    FINGERPRINT_FILE,
    LOG_FILE,
    LOOP_VERSION,
    STATE_FILE,
    checkpoint_folder,
    differing_keys,
    fingerprint_digest,
    last_complete_epoch,
    prune_training_states,
    publish,
)
from bilevel_unlearning.unlearn.data import MicroBatch, UnlearnData, epoch_steps, steps_per_epoch
from bilevel_unlearning.unlearn.objectives import Objective
from bilevel_unlearning.unlearn.rules import GradStats, combine, sum_across_processes
from bilevel_unlearning.unlearn.sharding import local

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    learning_rate: float
    batch_size: int = 4  # the GLOBAL batch: examples per optimizer step over all processes
    micro_batch_size: int | None = None  # most examples per forward pass (memory); None: all
    max_steps_per_epoch: int | None = None  # WMDP: the authors stop after 150 batches
    schedule: str = "constant"  # constant | linear | cosine (after the warm-up, decay to 0)
    warmup_steps: int = 0
    warmup_epochs: float | None = None  # instead of warmup_steps: per split, from its size
    # precision mixed: fp32 master weights and optimizer state, bf16 compute (autocast, or
    # FSDP's mixed-precision policy), bf16 published weights
    autocast_dtype: str | None = None
    publish_dtype: str | None = None
    weight_decay: float = 0.0
    clip_norm: float | None = None  # on the combined direction; None as in the authors' runs
    seed: int = 0
    log_every: int = 10
    # the training state (optimizer, scheduler; DCP shards under FSDP: ~81 GB for a 7B model)
    # is written every state_every epochs and at the last; every epoch's weights are saved
    state_every: int = 1

    def keeps_state(self, epoch: int) -> bool:
        """Whether epoch's checkpoint holds the training state a resume starts from."""
        return epoch % self.state_every == 0 or epoch == self.epochs


@dataclass
class StepRecord:
    epoch: int
    step: int
    values: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> str:
        return json.dumps({"epoch": self.epoch, "step": self.step, **self.values}, sort_keys=True)


def learning_rate_factor(
    settings: LoopSettings, total_steps: int, warmup_steps: int
) -> Callable[[int], float]:
    """Linear warm-up, then constant, linear decay to zero (TOFU) or cosine decay to zero
    (MUSE's Task Vector fine-tuning), as the Hugging Face schedulers of those names."""
    return schedule_factor(settings.schedule, total_steps, warmup_steps)


class NonFiniteError(FloatingPointError):
    """A loss or gradient became NaN or infinite: the run stops before that update."""


def _check_finite(name: str, value: torch.Tensor, epoch: int, step: int) -> None:
    if not torch.isfinite(value).all():
        raise NonFiniteError(
            f"{name} is {value.item() if value.numel() == 1 else 'non-finite'} at epoch {epoch}, "
            f"step {step}: stopping before the update (no checkpoint is written for it). "
            "Lower the learning rate, or check the method's hyperparameters."
        )


@dataclass
class Unlearner:
    """Runs one method on one benchmark's data; owns the model, optimizer and log."""

    model: torch.nn.Module
    objective: Objective
    data: UnlearnData
    settings: LoopSettings
    out: Path
    accelerator: Any = None
    fingerprint: Mapping[str, Any] = field(default_factory=dict)  # what made the run
    device: torch.device | None = None  # default: runtime.compute_device(accelerator)
    sharded: bool = False  # FSDP2 over all processes (see unlearn/sharding.py)
    save_model: Callable[..., None] | None = None  # (model, folder, state_dict=None)
    records: list[StepRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.accelerator is None:
            from accelerate import Accelerator

            self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.device = compute_device(self.accelerator) if self.device is None else self.device
        self.layout: BatchLayout = batch_layout(
            self.settings.batch_size,
            self.accelerator.num_processes,
            self.settings.micro_batch_size,
        )
        chosen = {id(p) for p in self.objective.trainable(self.model)}
        if self.sharded:  # shard where the weights were loaded (the CPU): only shards move
            self._shard()
            chosen = {id(p) for p in self.model.parameters() if p.requires_grad}
        # by name: a move may replace the parameter objects (CPU to meta does), and a freed
        # object's id can be taken by another, so ids held across it could pick wrong ones
        trainable = {name for name, p in self.model.named_parameters() if id(p) in chosen}
        self.model.to(self.device)
        self.objective.to(self.device)
        self.params = [p for name, p in self.model.named_parameters() if name in trainable]
        self.optimizer = adamw(self.params, self.settings.learning_rate, self.settings.weight_decay)
        steps = steps_per_epoch(
            self.data, self.settings.batch_size, self.settings.max_steps_per_epoch
        )
        self.total_steps = steps * self.settings.epochs
        warmup = self.settings.warmup_steps
        if self.settings.warmup_epochs is not None:  # one warm-up epoch of this split's size
            warmup = round(self.settings.warmup_epochs * steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, learning_rate_factor(self.settings, self.total_steps, warmup)
        )
        # placed above; prepare only wraps (DDP), never moves the model. The scheduler stays
        # ours: accelerate's wrapper steps it once per process, so under 2 processes a linear
        # schedule reached 0 half-way; the rate follows the optimizer's steps, not the ranks
        if not self.sharded:
            self.model, self.optimizer = self.accelerator.prepare(
                self.model, self.optimizer, device_placement=[False] * 2
            )
        strategy = "FSDP2" if self.sharded else self.accelerator.distributed_type.name
        log.info("%s, on %s, %s", self.layout.describe(), self.device, strategy)
        # g_F's buffer: one local shard per process under FSDP
        self.forget_buffer = (
            [torch.zeros_like(g) for g in local(self.params)] if self.two_passes else []
        )
        self.negation = self.objective.config.get("negation")
        if self.negation is not None:  # Task Vector publishes relative to the starting weights
            if self.sharded:  # gathered in full on the CPU of process 0 (collective)
                self.initial_weights = sharding.full_state_dict(self.model)
            else:
                model = self.accelerator.unwrap_model(self.model)
                self.initial_weights = {
                    k: v.detach().clone() for k, v in model.state_dict().items()
                }
        # real .grad tensors from the start: the rule writes its direction into them
        for parameter in self.params:
            parameter.grad = torch.zeros_like(parameter)

    def _shard(self) -> None:
        """FSDP2 over every process: the trained model and the frozen reference."""
        if not torch.distributed.is_initialized():
            raise RuntimeError(
                "sharded (FSDP) unlearning needs one process per GPU: start the job with "
                "accelerate launch or torchrun (the workflow's launcher does)"
            )
        policy = None
        if self.settings.autocast_dtype is not None:
            policy = sharding.mixed_precision_policy(compute_dtype(self.settings.autocast_dtype))
        for module in (self.model, self.objective.reference, self.objective.reinforced):
            if module is not None and not sharding.is_sharded(module):
                sharding.shard(module, policy)

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 compute over fp32 master weights (precision mixed); under FSDP the sharding's
        mixed-precision policy casts instead."""
        if self.settings.autocast_dtype is None or self.sharded:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=compute_dtype(self.settings.autocast_dtype))

    @property
    def all_reduce(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Sharded gradients: the rule's inner products are summed over the processes."""
        return sum_across_processes if self.sharded else None

    def _task_vector_weights(self, trained: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """theta_0 - negation * (theta - theta_0): Task Vector's unlearned weights."""
        return {
            name: start - self.negation * (trained[name] - start)
            for name, start in self.initial_weights.items()
        }

    @property
    def two_passes(self) -> bool:
        return self.objective.retain is not None

    def _epoch_steps(self, epoch: int) -> list[list[MicroBatch]]:
        generator = torch.Generator().manual_seed(self.settings.seed * 1_000_003 + epoch)
        steps = epoch_steps(
            self.data,
            self.layout,
            generator,
            self.two_passes,
            rank=self.accelerator.process_index,
            max_steps=self.settings.max_steps_per_epoch,
        )
        return [[micro.to(self.device) for micro in group] for group in steps]

    # -- one optimizer step -------------------------------------------------------------------

    def _backward(
        self, group: Sequence[MicroBatch], loss_of: Callable[[MicroBatch], torch.Tensor]
    ) -> torch.Tensor:
        """Accumulate the global batch's mean loss into .grad; sync on the last micro-batch.

        Returns the global batch's loss (averaged over processes: one scalar collective).
        """
        losses = []
        for index, micro in enumerate(group):
            last = index == len(group) - 1
            sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)
            with sync, self._autocast():
                loss = loss_of(micro) * micro.weight
                self.accelerator.backward(loss)
            losses.append(loss.detach())
        return self.accelerator.reduce(torch.stack(losses).sum(), reduction="mean")

    def _step(self, group: Sequence[MicroBatch], epoch: int, step: int) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=False)
        forget = self._backward(group, lambda m: self.objective.forget_loss(self.model, m))
        _check_finite("the forget loss", forget, epoch, step)
        values = {"forget_loss": float(forget)}
        if self.two_passes:
            torch._foreach_copy_(self.forget_buffer, self._grads())
            self.optimizer.zero_grad(set_to_none=False)
            retain = self._backward(group, lambda m: self.objective.retain_loss(self.model, m))
            _check_finite("the retain loss", retain, epoch, step)
            stats = combine(
                self.objective.rule,
                self.forget_buffer,
                self._grads(),
                self.objective.config,
                self.all_reduce,
            )
            values["retain_loss"] = float(retain)
        else:
            stats = GradStats.of_forget_only(self._grads(), self.all_reduce)
        gradient_stats = stats.as_floats()
        for name, value in gradient_stats.items():
            _check_finite(f"the gradient statistic {name}", torch.tensor(value), epoch, step)
        values.update(gradient_stats)
        if self.settings.clip_norm is not None:  # over the whole (sharded) direction
            torch.nn.utils.clip_grad_norm_(self.params, self.settings.clip_norm)
        values["learning_rate"] = self.scheduler.get_last_lr()[0]  # the rate this step uses
        self.optimizer.step()
        self.scheduler.step()
        return values

    def _grads(self) -> list[torch.Tensor]:
        """The gradients the rule works on: this process's shards under FSDP."""
        return local([p.grad for p in self.params])

    # -- epochs, checkpoints, resume ----------------------------------------------------------

    def _resumable_epoch(self) -> int:
        """The last complete checkpoint if this run made it, else 0 (checkpoints discarded)."""
        start = last_complete_epoch(self.out, self.settings.epochs)
        if not start:
            return 0
        recorded_file = checkpoint_folder(self.out, start) / FINGERPRINT_FILE
        recorded = json.loads(recorded_file.read_text()) if recorded_file.is_file() else {}
        if recorded.get("sha256") == fingerprint_digest(self._made_from()):
            return start
        why = (
            "it has no fingerprint (an older version of the loop made it)"
            if not recorded
            else "it was made with different "
            + ", ".join(differing_keys(recorded.get("made_from", {}), self._made_from()))
        )
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            shutil.rmtree(self.out / CHECKPOINTS)
        self.accelerator.wait_for_everyone()
        log.warning(
            "not resuming from %s: %s; discarded the checkpoints, starting from the start model",
            checkpoint_folder(self.out, start),
            why,
        )
        return 0

    def _made_from(self) -> dict[str, Any]:
        # the training state's form: FSDP keeps the optimizer in DCP shards, one process in the
        # state file; neither loads the other's, so a job rerun with another strategy (e.g. on
        # fewer GPUs) starts over instead of failing on its first step
        training_state = "sharded (DCP)" if self.sharded else "whole"
        return {**self.fingerprint, "training_state": training_state, "loop_version": LOOP_VERSION}

    def run(self) -> list[StepRecord]:
        start = self._resumable_epoch()
        if start:
            self._resume(start)
        progress = _progress(self.total_steps, start * self.total_steps // self.settings.epochs)
        for epoch in range(start + 1, self.settings.epochs + 1):
            self.model.train()
            for group in self._epoch_steps(epoch):
                step = len(self.records) + 1
                began, tokens = (
                    time.perf_counter(),
                    sum(int(m.forget["attention_mask"].sum()) for m in group),
                )
                values = self._step(group, epoch, step)
                values.update(self.layout.as_dict())
                values["tokens_per_s"] = tokens / (time.perf_counter() - began)
                self.records.append(StepRecord(epoch, step, values))
                progress(step, values, self.settings.log_every)
            self._checkpoint(epoch)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            publish(self.out, self.settings.epochs)
        return self.records

    def _checkpoint(self, epoch: int) -> None:
        """Write checkpoints/epoch_{epoch} (collective): the Hugging Face folder, the training
        state (sharded under FSDP, every process writing its part), the fingerprint; then keep
        only this epoch's training state. The folder is renamed into place when complete."""
        folder = checkpoint_folder(self.out, epoch)
        partial = folder.with_name(f".{folder.name}.partial")
        main = self.accelerator.is_main_process
        self.accelerator.wait_for_everyone()
        if main:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        weights = sharding.full_state_dict(self.model) if self.sharded else None
        state = self._training_state(partial) if self.settings.keeps_state(epoch) else None
        if main:
            self._write_checkpoint(partial, state, weights)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(partial, folder)
            if state is not None:
                prune_training_states(self.out, keep=epoch)
            write_text(
                self.out / CHECKPOINTS / LOG_FILE,
                "".join(r.as_json() + "\n" for r in self.records),
            )
            log.info("epoch %d: checkpoint %s", epoch, folder)
        self.accelerator.wait_for_everyone()

    def _training_state(self, folder: Path) -> dict[str, Any]:
        """The state a resume starts from (collective under FSDP: every process writes its
        optimizer shards into `folder`; one process keeps the optimizer in the state)."""
        state = {"scheduler": self.scheduler.state_dict(), "steps": len(self.records)}
        if self.sharded:
            sharding.save_training_state(
                folder / sharding.TRAINING_STATE, self.model, self.optimizer
            )
        else:
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def _write_checkpoint(
        self, folder: Path, state: dict[str, Any] | None, weights: dict[str, torch.Tensor] | None
    ) -> None:
        """Process 0's part: the model folder and, when `state` is given (keeps_state), the
        trainer state and the fingerprint.

        The trained weights are kept in the trainer state when the published ones differ from
        them: Task Vector's negation, or mixed precision's bf16 copy of fp32 master weights.
        """
        model = self.accelerator.unwrap_model(self.model)
        trained = weights
        if trained is None:
            trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
        published = trained if self.negation is None else self._task_vector_weights(trained)
        if self.settings.publish_dtype is not None:
            dtype = compute_dtype(self.settings.publish_dtype)
            published = {k: v.to(dtype) for k, v in published.items()}
        if state is not None and published is not trained and not self.sharded:
            state["weights"] = trained
        if self.save_model is not None:
            self.save_model(model, folder, state_dict=published)
        else:
            model.save_pretrained(folder, state_dict=published, safe_serialization=True)
        if state is None:
            return
        torch.save(state, folder / STATE_FILE)
        made_from = self._made_from()
        recorded = {"sha256": fingerprint_digest(made_from), "made_from": made_from}
        (folder / FINGERPRINT_FILE).write_text(json.dumps(recorded, indent=2, default=str))

    def _resume(self, epoch: int) -> None:
        """Load the weights, optimizer and scheduler of a finished epoch and its log."""
        from safetensors.torch import load_file

        folder = checkpoint_folder(self.out, epoch)
        # on the CPU first: the optimizer moves its state to each parameter's device
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
        if self.sharded:
            sharding.load_training_state(
                folder / sharding.TRAINING_STATE, self.model, self.optimizer
            )
        else:
            weights = state.get("weights")  # Task Vector keeps its trained weights here
            if weights is None:
                weights = {}
                for shard in sorted(folder.glob("*.safetensors")):
                    weights.update(load_file(shard))
            self.accelerator.unwrap_model(self.model).load_state_dict(weights, strict=False)
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        step_log = self.out / CHECKPOINTS / LOG_FILE
        lines = step_log.read_text().splitlines() if step_log.exists() else []
        self.records = [_record(json.loads(line)) for line in lines][: state["steps"]]
        log.info("resumed after epoch %d (%d steps) from %s", epoch, state["steps"], folder)


def _record(entry: Mapping[str, Any]) -> StepRecord:
    values = {k: v for k, v in entry.items() if k not in ("epoch", "step")}
    return StepRecord(entry["epoch"], entry["step"], values)


def _progress(total: int, done: int) -> Callable[[int, Mapping[str, float], int], None]:
    """A progress bar on a terminal; plain periodic log lines in batch logs."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, initial=done, unit="step")

        def show(step: int, values: Mapping[str, float], every: int) -> None:
            bar.update(1)
            bar.set_postfix(
                loss=f"{values['forget_loss']:.4f}", tok_s=f"{values['tokens_per_s']:.0f}"
            )

        return show

    def line(step: int, values: Mapping[str, float], every: int) -> None:
        if step % every == 0 or step == total:
            log.info(
                "step %d/%d forget_loss %.4f retain_loss %s tokens/s %.0f",
                step,
                total,
                values["forget_loss"],
                f"{values['retain_loss']:.4f}" if "retain_loss" in values else "-",
                values["tokens_per_s"],
            )

    return line
