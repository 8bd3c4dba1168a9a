"""How a training job loads its start model (start_models) and how a plain training run
(train_causal_lm) uses its processes: one, DDP replicas or FSDP2 shards, in the job's precision.

The models stage's fine-tuning (a 7B `build_from` target on 4 GPUs) and WHP's reinforced model
inside an unlearning job share this one rule, so both train the way the unlearning loop does:
- fsdp: every decoder layer sharded (unlearn.sharding.shard) with the job's mixed-precision
  policy under `precision: mixed` (bf16 compute over fp32 shards, gradients reduced in fp32);
  the model arrives sharded (start_models) or on the CPU, so that no GPU ever holds it whole;
- ddp: a replica per process, gradients averaged by DistributedDataParallel, autocast under
  mixed;
- single: the model on the job's device, autocast under mixed.
Under fsdp and ddp each process takes every world-th example of each batch
(train_causal_lm's rank and world), so the processes split the work instead of repeating it.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bilevel_unlearning.models.hf import enable_activation_checkpointing, load_model
from bilevel_unlearning.runtime import MIXED_COMPUTE, compute_dtype, master_precision

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
        from bilevel_unlearning.unlearn.sharding import is_sharded, mixed_precision_policy, shard

        if not is_sharded(model):  # sharded_copy shards as it loads; a CPU model is sharded here
            if next(model.parameters()).device.type != "cpu":
                raise ValueError("load the model on the CPU before sharding it (FSDP placement)")
            policy = mixed_precision_policy(compute_dtype(MIXED_COMPUTE))
            shard(model, policy if precision == "mixed" else None).to(device)
        return Placement(model, model, strategy, precision, rank, world)
    model.to(device)
    device_ids = [device.index] if device.type == "cuda" else None
    wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return Placement(model, wrapped, strategy, precision, rank, world)


@dataclass(frozen=True)
class StartModels:
    """The model a job trains and its copies: the frozen reference (NPO's, RMU's, ...) in the
    compute dtype, and the copy WHP reinforces."""

    model: torch.nn.Module
    reference: torch.nn.Module | None = None
    reinforced: torch.nn.Module | None = None


def start_models(
    model_dir: Path,
    precision: str,
    strategy: str,
    device: torch.device,
    *,
    reference: bool,
    reinforced: bool,
    checkpointing: bool,
) -> StartModels:
    """Load the start model and the copies the method needs (checkpointing: recompute the
    trained model's activations in the backward pass, and the reinforced copy's).

    One process or DDP: loaded on the job's device and copied there. FSDP: process 0 alone
    reads the weights, and every copy is built empty and sharded, each process receiving its
    shards by broadcast (sharding.sharded_copy): host memory holds the model once per node,
    where each process loading it and copying it held up to three per process."""
    master, compute = compute_dtype(master_precision(precision)), compute_dtype(precision)
    prepare = enable_activation_checkpointing if checkpointing else None
    if strategy != "fsdp":
        model = load_model(model_dir, master_precision(precision), device)
        frozen = copy.deepcopy(model).to(compute) if reference else None
        if prepare is not None:
            prepare(model)
        return StartModels(model, frozen, copy.deepcopy(model) if reinforced else None)
    from bilevel_unlearning.unlearn import sharding

    weights = sharding.start_weights(model_dir, master)
    policy = sharding.mixed_precision_policy(compute) if precision == "mixed" else None

    def sharded(dtype: torch.dtype, prepare: Any = None) -> torch.nn.Module:
        return sharding.sharded_copy(model_dir, weights, dtype, device, policy, prepare)

    return StartModels(
        sharded(master, prepare),
        sharded(compute) if reference else None,
        sharded(master, prepare) if reinforced else None,
    )
