"""FSDP2 for the unlearning loop: sharded parameters, gradients and optimizer state.

`fully_shard` (PyTorch-native FSDP2) is applied to every decoder layer and then to the whole
model, for the trained model and the frozen reference alike. Parameters and gradients are
DTensors, each process holding one shard; the update rules work on the local shards and
reduce their inner products with one all-reduce (rules.sum_across_processes), so BLUR's extra
gradient buffer is one shard per process, not a full copy.

Loading: process 0 alone reads the start model (start_weights); every process builds the model
empty (parameters on the meta device), shards it and receives its shards by broadcast
(sharded_copy), so a node holds the full model once, in process 0, not once per process and
per copy (the trained model, the frozen reference, WHP's reinforced model).

Checkpoints are collective: every process writes its shard of the model and optimizer state
with torch.distributed.checkpoint (resumable on the same number of processes, or resharded on
another), and process 0 writes the full weights as a normal Hugging Face folder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from bilevel_unlearning.unlearn.objectives import decoder_layers

TRAINING_STATE = "training_state"  # the DCP folder inside a checkpoint


def shard(model: torch.nn.Module, mixed_precision: Any = None) -> torch.nn.Module:
    """Shard each decoder layer, then the rest (embeddings, norm, head), over all processes."""
    from torch.distributed.fsdp import fully_shard

    options = {} if mixed_precision is None else {"mp_policy": mixed_precision}
    for layer in decoder_layers(model):
        fully_shard(layer, **options)
    fully_shard(model, **options)
    return model


def start_weights(model_dir: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The start model's full weights on the CPU of process 0, read once; {} elsewhere."""
    if torch.distributed.get_rank() != 0:
        return {}
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).state_dict()


def empty_model(model_dir: Path, dtype: torch.dtype) -> torch.nn.Module:
    """The model of the folder's config.json with its parameters on the meta device (no
    memory); its buffers (RoPE's inverse frequencies) are computed as usual, on the CPU."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir), dtype=dtype)


def sharded_copy(
    model_dir: Path,
    weights: Mapping[str, torch.Tensor],
    dtype: torch.dtype,
    device: torch.device,
    mixed_precision: Any = None,
    prepare: Callable[[torch.nn.Module], None] | None = None,
) -> torch.nn.Module:
    """A copy of the start model in `dtype`, sharded over all processes on `device`
    (collective): built empty, sharded, then filled with process 0's `weights` (start_weights)
    by broadcast, each process keeping its shards. Floating buffers are cast to `dtype`, as
    loading and then casting the whole model would. `prepare`: applied to the empty model
    before sharding (activation checkpointing)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    model = empty_model(model_dir, dtype)
    if model.config.tie_word_embeddings:
        raise ValueError(
            f"{model_dir}: sharded loading does not handle tied input and output embeddings "
            "(tie_word_embeddings); models that large (7B) do not tie them. Run this model "
            "on one GPU (the profile's gpus: 1)."
        )
    if prepare is not None:
        prepare(model)
    shard(model, mixed_precision)
    buffers = {
        name: value.to(dtype) if value.is_floating_point() else value
        for name, value in model.named_buffers()
    }
    model.to_empty(device=device)
    for name, value in buffers.items():  # to_empty left them uninitialised
        owner, _, attribute = name.rpartition(".")
        model.get_submodule(owner)._buffers[attribute] = value.to(device)
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, dict(weights), options=options)
    return model.eval()


def is_sharded(module: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def mixed_precision_policy(compute_dtype: torch.dtype) -> Any:
    """bf16 compute over fp32 sharded master weights; gradients reduced in fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)


def local(tensors: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
    """The local shards (aliases: writing into them writes the DTensor)."""
    return [t.to_local() if hasattr(t, "to_local") else t for t in tensors]  # type: ignore[union-attr]


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer gathered in full on the CPU (collective: all processes call
    it; process 0 gets the tensors, the others an empty dict)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def save_training_state(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Each process writes its shards of the weights and the optimizer state (collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(folder))


def load_training_state(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Read the shards back into the sharded model and optimizer (collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    create_optimizer_state(optimizer)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=str(folder))
    set_state_dict(
        model,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optimizer"],
    )


def create_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Give a fresh optimizer its (zero) state tensors, so that a loaded state has somewhere
    to go: one step at learning rate 0 on the zero gradients the loop keeps. (torch's own
    helper skips this when gradients exist, and the loop's always do.)"""
    if optimizer.state:
        return
    rates = [group["lr"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    optimizer.step()
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
