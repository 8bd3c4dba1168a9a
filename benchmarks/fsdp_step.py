"""FSDP2 on the CPU: BLUR-NPO against NPO_GDR, each sharded over the processes.

Run under torchrun with 2 processes (gloo):

    python -m torch.distributed.run --nproc_per_node=2 benchmarks/fsdp_step.py [--steps 8]

Prints, from process 0: the median over interleaved rounds (A B A B, so drift of the machine
hits both alike) of the step time ratio BLUR-NPO / NPO_GDR, and the bytes of BLUR's extra
gradient buffer (g_F) per process against one unsharded gradient copy.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.unlearn_step import METHODS, data, model
from bilevel_unlearning.unlearn.loop import LoopSettings, Unlearner
from bilevel_unlearning.unlearn.objectives import Objective


def sharded_unlearner(name: str, hidden: int, layers: int, out: Path) -> Unlearner:
    base = model(hidden, layers)
    settings = LoopSettings(epochs=1, learning_rate=1e-5, batch_size=4)
    objective = Objective(METHODS[name], copy.deepcopy(base))
    return Unlearner(base, objective, data(), settings, out, sharded=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        runs = {n: sharded_unlearner(n, args.hidden, args.layers, Path(out) / n) for n in METHODS}
        batches = {n: run._epoch_steps(1) for n, run in runs.items()}
        times: dict[str, list[float]] = {n: [] for n in METHODS}
        for step in range(args.steps + 1):  # the first round warms up
            for name, run in runs.items():
                group = batches[name][step % len(batches[name])]
                torch.distributed.barrier()
                began = time.perf_counter()
                run._step(group, 1, step + 1)
                if step:
                    times[name].append(time.perf_counter() - began)
        blur = runs["blur_npo"]
        buffer = sum(t.numel() * t.element_size() for t in blur.forget_buffer)
        full = sum(p.numel() * 4 for p in model(args.hidden, args.layers).parameters())
        if blur.accelerator.is_main_process:
            ratios = [b / n for b, n in zip(times["blur_npo"], times["npo_gdr"], strict=True)]
            print(f"FSDP2 over {blur.accelerator.num_processes} processes (gloo, CPU, fp32)")
            print(
                f"step time: npo_gdr {statistics.median(times['npo_gdr']) * 1e3:.1f} ms, "
                f"blur_npo {statistics.median(times['blur_npo']) * 1e3:.1f} ms, "
                f"median ratio of interleaved pairs {statistics.median(ratios):.3f}"
            )
            print(
                f"g_F buffer per process: {buffer / 2**20:.2f} MiB; one unsharded gradient "
                f"copy: {full / 2**20:.2f} MiB (share {buffer / full:.3f})"
            )


if __name__ == "__main__":
    main()
