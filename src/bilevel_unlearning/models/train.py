"""Causal-LM training: pretraining the base, fine-tuning targets and oracles (the models
stage), WHP's reinforced model and the relearning attack, on examples from encoding.py, with
the learning-rate schedules the stages share."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence

import torch

from bilevel_unlearning.models.encoding import Example, collate, pack
from bilevel_unlearning.runtime import to_device


def warmup_then_linear(total_steps: int, warmup_share: float = 0.05) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then linear decay to 10% of the peak by the end."""
    warmup = max(1, int(total_steps * warmup_share))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 1.0 - 0.9 * min(1.0, progress)

    return factor


def schedule_factor(kind: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor of the Hugging Face schedulers of these names: linear warm-up over
    `warmup_steps`, then constant, linear decay to zero, or cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if kind == "cosine":
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
        return max(0.0, 1.0 - progress)

    return factor


def adamw(
    params: Iterable[torch.nn.Parameter], learning_rate: float, weight_decay: float = 0.0
) -> torch.optim.AdamW:
    """torch's AdamW in its fused form, for every training path.

    Why fused: the default (foreach) form divides by `_foreach_sqrt(v)`, and ATen's float32
    square root is not correctly rounded on CPU, its bits depending on the CPU model (AVX2
    under the pins on Intel, AMD and emulated CPUs alike: docs/fidelity.md, the census);
    the fused CPU kernel gives the same bits on every x86-64 CPU, and on GPUs it is one kernel
    per step instead of a dozen. A model on the meta device (the tests' stand-in for a GPU)
    has no fused kernel and gets the foreach form.
    """
    params = list(params)
    fused = not any(p.is_meta for p in params)
    return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay, fused=fused)


def batch_mean(loss: torch.Tensor, world: int) -> float:
    """The loss of the whole batch: the mean of the processes' shares when they split it
    (collective: every process calls it), so the log and provenance do not depend on the
    number of processes."""
    if world > 1:
        torch.distributed.all_reduce(loss)
        loss = loss / world
    return loss.item()


def train_causal_lm(
    model: torch.nn.Module,
    examples: Sequence[Example],
    *,
    pad_id: int,
    epochs: int | None,
    learning_rate: float,
    batch_size: int,
    seed: int,
    replay: Sequence[Example] = (),
    replay_per_epoch: int = 0,
    pack_length: int | None = None,
    max_steps: int | None = None,
    lr_factor: Callable[[int], float] | None = None,
    log: Callable[[str], None] = print,
    rank: int = 0,
    world: int = 1,
) -> list[float]:
    """Train with AdamW; each epoch mixes in `replay_per_epoch` examples drawn from `replay`.

    With `pack_length`, each epoch's shuffled examples are packed into chunks of that length.
    `max_steps` (epochs None): stop after that many updates, reshuffling as often as needed
    (the relearning attack's "N steps"). `lr_factor`: the learning-rate factor per step
    (default: warm-up then linear decay over the whole run, warmup_then_linear).

    `world` > 1 (a model sharded with FSDP2 over that many processes, this one `rank`): every
    process draws the same order and takes every world-th example of each batch, so the
    processes split the work and FSDP's gradient reduction averages their shares (with
    equal-length examples, the global batch's mean). A batch smaller than `world` is skipped
    by every process alike, so their collectives stay in step.

    Returns the mean loss of each epoch (of the whole batches, whatever `world`). A non-finite
    loss stops training with an error.
    """
    if (epochs is None) == (max_steps is None):
        raise ValueError("give train_causal_lm either epochs or max_steps")
    generator = torch.Generator().manual_seed(seed)
    replay_per_epoch = min(replay_per_epoch, len(replay))
    epoch_size = len(examples) + replay_per_epoch
    if pack_length is not None:
        lengths = sorted((len(e.input_ids) for e in replay), reverse=True)[:replay_per_epoch]
        epoch_size = math.ceil(
            (sum(len(e.input_ids) for e in examples) + sum(lengths)) / pack_length
        )
    total_steps = max_steps if epochs is None else epochs * math.ceil(epoch_size / batch_size)
    device = next(model.parameters()).device  # batches go where the model is
    optimizer = adamw(model.parameters(), learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor or warmup_then_linear(total_steps)
    )
    model.train()
    epoch_losses, step = [], 0
    for epoch in itertools.count(1):
        if (epochs is not None and epoch > epochs) or step == total_steps:
            break
        drawn = torch.randperm(len(replay), generator=generator)[:replay_per_epoch].tolist()
        pool = list(examples) + [replay[i] for i in drawn]
        order = torch.randperm(len(pool), generator=generator).tolist()
        if pack_length is not None:
            pool = pack([pool[i] for i in order], pack_length)
            order = list(range(len(pool)))
        losses, tokens, start = [], 0, time.perf_counter()
        for first in range(0, len(order), batch_size):
            if step == total_steps:
                break
            chosen = order[first : first + batch_size]
            if len(chosen) < world:
                break
            batch = to_device(collate([pool[i] for i in chosen[rank::world]], pad_id), device)
            loss = model(**batch).loss
            value = batch_mean(loss.detach(), world)  # every process stops alike on NaN
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"non-finite loss {value} at epoch {epoch}: stopping before the update; "
                    "lower the learning rate or check the data"
                )
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(value)
            tokens += int(batch["attention_mask"].sum())
            step += 1
        if not losses:  # packing made the epoch shorter than estimated
            break
        epoch_losses.append(sum(losses) / len(losses))
        rate = tokens / (time.perf_counter() - start)
        loss = epoch_losses[-1]
        log(f"epoch {epoch}/{epochs or '-'} step {step} loss {loss:.4f} ({rate:.0f} tokens/s)")
    model.eval()
    return epoch_losses
