"""Where a job computes and how its batch is split: the one place that decides both.

Every stage (model preparation, unlearning, sanity probes, evaluation) asks this module for its
device and dtype and moves every tensor it creates there explicitly, so a job runs the same on
a CPU, on one GPU or on one GPU per process under DDP.

The config's `batch_size` is the GLOBAL batch (the paper's number). `batch_layout` turns it
into a micro-batch per process and a number of accumulation steps, so the sequence of updates
is the same on 1, 2, 4 or 8 processes; only memory per process and speed change.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where a device is needed: the plan and DAG stay light
    import torch

PRECISIONS = ("float32", "bfloat16", "float16", "mixed")
# precision mixed: weights and optimizer state in float32 (the master copy), compute in bfloat16
MIXED_COMPUTE, MIXED_MASTER = "bfloat16", "float32"


def compute_device(accelerator: Any = None) -> torch.device:
    """The accelerator's device when a job has one (its own GPU under DDP), else the CPU.

    Without an accelerate Accelerator, process `LOCAL_RANK` takes GPU `LOCAL_RANK` (a SLURM job
    sees only the GPUs it was given, numbered from 0).
    """
    import torch

    if accelerator is not None:
        return torch.device(accelerator.device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def compute_precision(precision: str) -> str:
    """The name of the compute dtype of a config `precision` (lm-eval's `dtype=`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {list(PRECISIONS)}")
    return MIXED_COMPUTE if precision == "mixed" else precision


def compute_dtype(precision: str) -> torch.dtype:
    """The compute dtype of a config `precision` (float32 on CPUs, bfloat16 or mixed on GPUs):
    what evaluation loads weights in and training computes in."""
    import torch

    return getattr(torch, compute_precision(precision))


def master_precision(precision: str) -> str:
    """The dtype the trained weights and the optimizer state are kept in."""
    return MIXED_MASTER if precision == "mixed" else precision


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A batch of tensors on `device` (token ids stay integers)."""
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def device_name(device: torch.device) -> str:
    """What provenance records: the GPU's name, or 'cpu'."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    return device.type


@dataclass(frozen=True)
class BatchLayout:
    """How one optimizer step's global batch is split over processes and micro-batches.

    global_batch = processes * grad_accum * micro_batch (the last batch of an epoch may be
    short: its examples are spread the same way and weighted by their count).
    """

    global_batch: int
    micro_batch: int
    grad_accum: int
    processes: int

    def describe(self) -> str:
        return (
            f"global batch {self.global_batch} = {self.processes} processes x "
            f"{self.grad_accum} accumulation steps x micro-batch {self.micro_batch}"
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "global_batch": self.global_batch,
            "micro_batch": self.micro_batch,
            "grad_accum": self.grad_accum,
            "processes": self.processes,
        }


def batch_layout(
    global_batch: int, processes: int = 1, max_micro_batch: int | None = None
) -> BatchLayout:
    """Split the global batch evenly over processes; accumulate when a process's share is
    larger than `max_micro_batch` (the memory knob), using the largest micro-batch that divides
    the share exactly, so every micro-batch of a full step has the same size."""
    if global_batch < 1 or processes < 1:
        raise ValueError(f"global batch {global_batch} and processes {processes} must be >= 1")
    if global_batch % processes:
        raise ValueError(
            f"the global batch {global_batch} does not split evenly over {processes} processes: "
            f"run on a number of GPUs that divides it, or change unlearn.*.batch_size"
        )
    share = global_batch // processes
    limit = share if max_micro_batch is None else max(1, min(share, max_micro_batch))
    micro = max(d for d in range(1, limit + 1) if share % d == 0)
    return BatchLayout(global_batch, micro, share // micro, processes)


def launch_command(gpus: int, accelerate_config: str) -> str:
    """How a training job starts: one process, or one per GPU under accelerate on one node,
    with the project's accelerate config (never a user's default one) and a rendezvous port
    chosen free on that node when the job starts (not 29500: two multi-GPU jobs may share a
    node). DDP or FSDP is the job's --strategy (parallel_strategy)."""
    if int(gpus) > 1:
        return (
            f"accelerate launch --config_file {accelerate_config} --multi_gpu --num_machines 1"
            f" --num_processes {int(gpus)}"
            " --main_process_port $(python -m bilevel_unlearning.cli free-port) -m"
        )
    return "python -m"


def torchrun_command(processes: int = 2) -> list[str]:
    """torchrun's command line for `processes` local processes on a free port: what the
    multi-process tests, benchmarks and GPU checks start their workers with (append the
    script and its arguments)."""
    import sys

    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={processes}",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
    ]


def free_port() -> int:
    """A TCP port free on this node now: each multi-GPU job's rendezvous gets its own, so two
    jobs on one node do not collide on torch's default 29500."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A model at least this large is sharded (FSDP2) when its job has more than one GPU: a 7B model
# with AdamW, a frozen reference and BLUR's extra buffer does not fit one 80 GB GPU whole.
SHARDED_PARAMS = 3e9


def parallel_strategy(gpus: int, params: int) -> str:
    """How a training job uses its GPUs: one process, DDP (a replica per GPU) or FSDP (one
    shard per GPU). The launcher, the loop and the plan all ask this function."""
    if gpus <= 1:
        return "single"
    return "fsdp" if params >= SHARDED_PARAMS else "ddp"
