"""What a small step does to bfloat16 weights, with and without fp32 master weights.

A learning rate of 1e-5 moves a weight of typical size (|w| ~ 0.02) by ~1e-5 in AdamW's first
step, far below bfloat16's spacing there (~1e-4): a plain bf16 update rounds most changes away.
With fp32 master weights (precision mixed) the update is kept and accumulates; the bf16 copy the
forward pass uses changes once enough steps have added up.

    python benchmarks/mixed_precision.py [--steps 1 10 100]

Prints, for a tiny Llama with random weights and one fixed batch: the share of weights left
unchanged after N AdamW steps at lr 1e-5, in plain bf16 and in fp32 master weights (and their
bf16 view).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.unlearn_step import data, model
from bilevel_unlearning.models.encoding import collate


def unchanged_share(before: list[torch.Tensor], after: list[torch.Tensor]) -> float:
    same = sum(int((a == b).sum()) for a, b in zip(before, after, strict=True))
    return same / sum(a.numel() for a in before)


def train(master_dtype: torch.dtype, steps: int) -> tuple[float, float]:
    """(share unchanged in the trained dtype, share unchanged in its bf16 view)."""
    net = model(128, 2).to(master_dtype)
    batch = collate(data(length=64, count=4).forget[0], pad_id=0)
    start = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-5, weight_decay=0.0)
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = net(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = [p.detach() for p in net.parameters()]
    view = unchanged_share([s.bfloat16() for s in start], [a.bfloat16() for a in after])
    return unchanged_share(start, after), view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 10, 100])
    args = parser.parse_args()
    torch.set_num_threads(2)
    print("share of weights unchanged after N AdamW steps at lr 1e-5")
    print(f"{'steps':>6} {'plain bf16':>11} {'fp32 master':>12} {'its bf16 view':>14}")
    for steps in args.steps:
        plain, _ = train(torch.bfloat16, steps)
        master, view = train(torch.float32, steps)
        print(f"{steps:>6} {plain:>11.3f} {master:>12.3f} {view:>14.3f}")


if __name__ == "__main__":
    main()
