"""GPU plan: memory per GPU and runtime of each unlearning job, before any job is submitted.

A job is a plain dict (the lead builds one per run from the config):

    {"name": "muse_news/blur_npo", "model": "llama-2-7b" | a model folder | an architecture dict,
     "precision": "bfloat16", "gpus": 4, "strategy": "fsdp", "batch": 32, "seq_len": 2048,
     "steps": 1020, "method": {forget_loss: npo, retain_loss: nll, rule: blur, ...},
     # "batch" is the global batch; optional: "micro_batch" (most sequences per GPU per
     # forward; default batch / gpus, else accumulation),
     # "gradient_checkpointing", "optimizer_dtype", "gpu", "gpu_memory_gib", "mfu",
     # "activation_factor"}

Memory model (bytes per GPU; FSDP shards every persistent tensor over the GPUs, DDP keeps a full
replica on each). The assumptions are in ASSUMPTIONS and printed under every table:

- weights: parameters x bytes of the precision;
- frozen copies: the reference model of NPO / KL retain / RMU (RMU's frozen model), two for WHP
  (reference and reinforced model), Task Vector's copy of the starting weights; same dtype;
- gradients: trainable parameters x bytes of the precision (RMU trains mlp.down_proj of a few
  layers only);
- extra buffer: one more gradient copy (g_F kept beside .grad) when the method has a retain loss,
  i.e. the rule needs both gradients (blur, blur_reversed, weighted_sum with a retain loss);
- optimizer: AdamW's two moments per trainable parameter in `optimizer_dtype` (float32 by
  default), plus float32 master weights under precision `mixed`;
- activations: micro-batch x seq x hidden x layers x a factor (bytes per token, hidden unit and
  layer), or only the layer inputs plus one layer under gradient checkpointing; plus the logits.

Runtime: FLOPs = steps x tokens per step x params x (6 per trained batch + 2 per frozen-model
forward), over GPUs x peak FLOP/s x MFU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bilevel_unlearning.plan.architecture import (
    Architecture,
    Needs,
    method_needs,
    resolve_architecture,
    trainable_params,
)
from bilevel_unlearning.runtime import batch_layout

GIB = 2**30

# -- hardware and numbers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    memory_gib: float
    peak_flops: Mapping[str, float]  # dense, by compute dtype
    memory_tb_s: float = 3.35  # HBM bandwidth: a decoding step reads every weight once


GPUS: dict[str, Gpu] = {
    # fp32: plain FP32 (PyTorch's default keeps TF32 off for matmuls)
    "H100": Gpu(80, {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12}, 3.35),
    "H200": Gpu(141e9 / GIB, {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12}, 4.8),
    "A100-80GB": Gpu(80, {"bfloat16": 312e12, "float16": 312e12, "float32": 19.5e12}, 2.0),
    "A100-40GB": Gpu(40, {"bfloat16": 312e12, "float16": 312e12, "float32": 19.5e12}, 1.55),
}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# precision -> (weight dtype, gradient dtype, compute dtype, master fp32 weights)
PRECISIONS: dict[str, tuple[str, str, str, bool]] = {
    "float32": ("float32", "float32", "float32", False),
    "bfloat16": ("bfloat16", "bfloat16", "bfloat16", False),
    "float16": ("float16", "float16", "float16", False),
    "mixed": ("float32", "float32", "bfloat16", False),  # fp32 master model, bf16 compute
}
DEFAULTS: Mapping[str, Any] = {
    "strategy": "ddp",
    "gradient_checkpointing": False,
    "optimizer_dtype": "float32",
    "gpu": "H100",
    "mfu": 0.35,
    # bytes per (token x hidden unit x layer) kept for backward at 16-bit, flash attention
    # (no seq^2 term): 34, Korthikanti et al. 2022; doubled for fp32 activations
    "activation_factor": 34.0,
    # what a job costs besides its FLOPs: start-up (launcher, imports, process group, CUDA),
    # reading its start model, writing its epochs and training states (a shared file system)
    "startup_s": 120.0,
    "read_gb_s": 2.0,
    "write_gb_s": 1.0,
    "state_every": 1,
}
ASSUMPTIONS = (
    "GiB = 2^30 bytes; memory per GPU; FSDP shards weights, frozen copies, gradients, the extra "
    "buffer and optimizer state over the GPUs (its transient all-gather buffers, about two "
    "layers of weights, are not counted); DDP keeps all of them whole on every GPU.",
    "optimizer: AdamW, two moments per trainable parameter in optimizer_dtype (default float32; "
    "torch's AdamW on bfloat16 parameters keeps bfloat16 moments: set optimizer_dtype bfloat16 "
    "to model the loop as it runs now); precision `mixed` keeps the trained weights, gradients "
    "and moments in float32 (the master copy) and computes in bfloat16.",
    "extra buffer: one gradient copy (g_F beside .grad) for every method with a retain loss.",
    "frozen copies: NPO, KL retain, RMU: 1 reference; WHP: 2 (reference, reinforced); Task "
    "Vector: 1 (starting weights); in the compute dtype.",
    "activations: micro_batch x seq x hidden x layers x activation_factor bytes (34 at 16-bit, "
    "x2 at fp32); with gradient checkpointing the layer inputs plus one layer's activations; "
    "plus the logits: micro_batch x seq x vocab x (compute bytes + 8) (fp32 copy and "
    "log-softmax), and the reference's logits when a loss reads them. Peak over the two "
    "backward passes (they run one after the other).",
    "runtime: 6 x params x tokens per trained batch (forget, and retain when present) + 2 x "
    "params x tokens per frozen-model forward; params excludes the embedding lookup; attention "
    "score FLOPs are not counted; GPU peak dense FLOP/s x MFU (default 0.35); with gradient "
    "checkpointing 2 x params x tokens more per trained batch (the recomputed forward).",
    "overheads per run: 120 s start-up; the start model read at 2 GB/s; each epoch's published "
    "weights (compute dtype) and each kept training state (weights in their own dtype and AdamW's "
    "two float32 moments; every state_every epochs and the last) written at 1 GB/s.",
)


# -- the estimate --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """Bytes per GPU by component, and the runtime, of one job."""

    name: str
    gpus: int
    strategy: str
    batch: str  # global = processes x accumulation x micro-batch
    precision: str
    params: int
    weights: float
    frozen: float
    grads: float
    extra: float
    optimizer: float
    activations: float
    gpu_memory: float
    seconds: float
    disk: float = 0.0  # bytes the run leaves: its published epochs and one training state

    @property
    def total(self) -> float:
        return (
            self.weights + self.frozen + self.grads + self.extra + self.optimizer + self.activations
        )

    @property
    def fits(self) -> bool:
        return self.total <= self.gpu_memory


def _setting(job: Mapping[str, Any], key: str) -> Any:
    return job.get(key, DEFAULTS[key])


def activation_bytes(
    architecture: Architecture,
    micro_batch: int,
    seq_len: int,
    compute_dtype: str,
    factor: float,
    checkpointing: bool,
    reference_logits_batches: int,
) -> float:
    """Activations kept for one backward pass on one GPU, logits included."""
    scale = DTYPE_BYTES[compute_dtype] / 2  # the factor is stated at 16-bit
    tokens_hidden = micro_batch * seq_len * architecture.hidden
    per_layer = tokens_hidden * factor * scale
    if checkpointing:
        layers = tokens_hidden * DTYPE_BYTES[compute_dtype] * architecture.layers + per_layer
    else:
        layers = per_layer * architecture.layers
    logit_values = micro_batch * seq_len * architecture.vocab
    logits = logit_values * (DTYPE_BYTES[compute_dtype] + 8)
    reference = logit_values * DTYPE_BYTES[compute_dtype] * min(1, reference_logits_batches)
    return layers + logits + reference


def estimate(job: Mapping[str, Any]) -> Estimate:
    """Memory per GPU by component and runtime of one job (see the module docstring)."""
    architecture = resolve_architecture(job["model"])
    precision = job["precision"]
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    weight_dtype, grad_dtype, compute_dtype, master = PRECISIONS[precision]
    gpus, strategy = int(job["gpus"]), _setting(job, "strategy")
    if strategy not in ("ddp", "fsdp"):
        raise ValueError(f"strategy {strategy!r}: expected ddp or fsdp")
    shards = gpus if strategy == "fsdp" else 1
    needs = method_needs(job.get("method", {}), architecture)
    params, trainable = architecture.params(), trainable_params(architecture, needs)
    grad_bytes = trainable * DTYPE_BYTES[grad_dtype]
    optimizer = trainable * (2 * DTYPE_BYTES[_setting(job, "optimizer_dtype")] + 4 * master)
    layout = batch_layout(int(job["batch"]), gpus, job.get("micro_batch"))
    micro_batch = layout.micro_batch
    activations = activation_bytes(
        architecture,
        micro_batch,
        int(job["seq_len"]),
        compute_dtype,
        float(_setting(job, "activation_factor")),
        bool(_setting(job, "gradient_checkpointing")),
        needs.reference_logits_batches,
    )
    gpu = GPUS[_setting(job, "gpu")]
    return Estimate(
        name=str(job.get("name", "job")),
        gpus=gpus,
        strategy=strategy,
        batch=f"{layout.global_batch}={gpus}x{layout.grad_accum}x{layout.micro_batch}",
        precision=precision,
        params=params,
        weights=params * DTYPE_BYTES[weight_dtype] / shards,
        frozen=needs.frozen_copies * params * DTYPE_BYTES[compute_dtype] / shards,
        grads=grad_bytes / shards,
        extra=grad_bytes * needs.retain_gradient / shards,
        optimizer=optimizer / shards,
        activations=activations,
        gpu_memory=float(job.get("gpu_memory_gib", gpu.memory_gib)) * GIB,
        seconds=(
            math.nan  # the forget set's size is not known (yet)
            if job.get("steps") is None
            else runtime_seconds(job, architecture, needs, compute_dtype, gpu)
        ),
        disk=run_disk_bytes(job, params, trainable, weight_dtype, compute_dtype),
    )


def run_disk_bytes(
    job: Mapping[str, Any], params: int, trainable: int, weight_dtype: str, compute_dtype: str
) -> float:
    """A run's disk: each published epoch's weights (in the compute dtype) and the one training
    state kept (weights in their own dtype, AdamW's two float32 moments per trained weight)."""
    epochs = int(job.get("epochs", 1))
    state = params * DTYPE_BYTES[weight_dtype] + trainable * 8
    return epochs * params * DTYPE_BYTES[compute_dtype] + state


def training_flops(job: Mapping[str, Any], architecture: Architecture, needs: Needs) -> float:
    """FLOPs of the whole run: 6 per parameter and token per trained batch (8 when gradient
    checkpointing recomputes the forward in the backward pass), 2 per frozen forward."""
    tokens = int(job["steps"]) * int(job["batch"]) * int(job["seq_len"])
    trained_batches = 1 + int(needs.retain_gradient)
    per_trained = 8 if _setting(job, "gradient_checkpointing") else 6
    return (
        tokens
        * architecture.matmul_params()
        * (per_trained * trained_batches + 2 * needs.frozen_forwards)
    )


def kept_states(epochs: int, every: int) -> int:
    """Training states a run writes: every `every` epochs and at the last (LoopSettings)."""
    return len({e for e in range(1, epochs + 1) if e % every == 0 or e == epochs})


def overhead_seconds(job: Mapping[str, Any], params: int, trainable: int, dtypes: tuple) -> float:
    """Start-up, reading the start model, writing the epochs and the training states."""
    weight_dtype, compute_dtype = dtypes
    epochs = int(job.get("epochs", 1))
    read = params * DTYPE_BYTES[weight_dtype]
    states = kept_states(epochs, int(_setting(job, "state_every")))
    state = params * DTYPE_BYTES[weight_dtype] + trainable * 8
    written = epochs * params * DTYPE_BYTES[compute_dtype] + states * state
    return (
        float(_setting(job, "startup_s"))
        + read / (float(_setting(job, "read_gb_s")) * 1e9)
        + written / (float(_setting(job, "write_gb_s")) * 1e9)
    )


def runtime_seconds(
    job: Mapping[str, Any], architecture: Architecture, needs: Needs, compute_dtype: str, gpu: Gpu
) -> float:
    """Wall seconds of a run: its FLOPs at the GPUs' peak x MFU, plus overhead_seconds."""
    throughput = int(job["gpus"]) * gpu.peak_flops[compute_dtype] * float(_setting(job, "mfu"))
    weight_dtype = PRECISIONS[job["precision"]][0]
    trainable = trainable_params(architecture, needs)
    overheads = overhead_seconds(
        job, architecture.params(), trainable, (weight_dtype, compute_dtype)
    )
    return training_flops(job, architecture, needs) / throughput + overheads
