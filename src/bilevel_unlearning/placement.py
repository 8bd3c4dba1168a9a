"""How a plain training run (train_causal_lm) uses its processes: one, DDP replicas or FSDP2
shards, in the job's precision.

The models stage's fine-tuning (a 7B `build_from` target on 4 GPUs) and WHP's reinforced model
inside an unlearning job share this one rule, so both train the way the unlearning loop does:
- fsdp: every decoder layer sharded (unlearn.sharding.shard) with the job's mixed-precision
  policy under `precision: mixed` (bf16 compute over fp32 shards, gradients reduced in fp32);
  the model must arrive on the CPU, so that no GPU ever holds it whole;
- ddp: a replica per process, gradients averaged by DistributedDataParallel, autocast under
  mixed;
- single: the model on the job's device, autocast under mixed.
Under fsdp and ddp each process takes every world-th example of each batch
(train_causal_lm's rank and world), so the processes split the work instead of repeating it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from bilevel_unlearning.runtime import MIXED_COMPUTE, compute_dtype

STRATEGIES = ("single", "ddp", "fsdp")


@dataclass(frozen=True)
class Placement:
    """A model placed for training: `trained` is what train_causal_lm trains (the model
    itself, sharded in place, or its DDP wrapper); `model` is the model underneath."""

    model: torch.nn.Module
    trained: torch.nn.Module
    strategy: str
    precision: str
    rank: int = 0
    world: int = 1

    def compute(self) -> contextlib.AbstractContextManager:
        """autocast to bf16 where the weights are fp32 and nothing else casts them (mixed,
        without FSDP's policy, which casts the shards itself)."""
        if self.precision != "mixed" or self.strategy == "fsdp":
            return contextlib.nullcontext()
        device = next(self.model.parameters()).device
        return torch.autocast(device.type, dtype=compute_dtype(MIXED_COMPUTE))

    def full_weights(self) -> dict[str, torch.Tensor] | None:
        """The full weights to save, gathered on the CPU of process 0 (collective under FSDP:
        every process must call it; the others get an empty dict). None when the model's own
        state dict is already whole (single, ddp)."""
        if self.strategy != "fsdp":
            return None
        from bilevel_unlearning.unlearn.sharding import full_state_dict

        return full_state_dict(self.model)


def place_for_training(
    model: torch.nn.Module, strategy: str, precision: str, device: torch.device
) -> Placement:
    """Place `model` on `device` for `strategy` (see the module docstring); fsdp and ddp need
    the process group started (accelerate launch or torchrun, then Accelerator or
    init_process_group)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is not one of {list(STRATEGIES)}")
    if strategy == "single":
        return Placement(model.to(device), model, strategy, precision)
    if not torch.distributed.is_initialized():
        raise RuntimeError(
            f"strategy {strategy} needs one process per GPU: start the job with accelerate "
            "launch or torchrun (the workflow's launcher does)"
        )
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    if strategy == "fsdp":
        from bilevel_unlearning.unlearn.sharding import mixed_precision_policy, shard

        if next(model.parameters()).device.type != "cpu":
            raise ValueError("load the model on the CPU before sharding it (FSDP placement)")
        policy = mixed_precision_policy(compute_dtype(MIXED_COMPUTE))
        shard(model, policy if precision == "mixed" else None).to(device)
        return Placement(model, model, strategy, precision, rank, world)
    model.to(device)
    device_ids = [device.index] if device.type == "cuda" else None
    wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return Placement(model, wrapped, strategy, precision, rank, world)
