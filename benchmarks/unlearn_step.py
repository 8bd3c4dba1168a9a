"""Speed and memory of the BLUR update against the weighted sum, measured side by side.

Prints three figures (no thresholds are asserted here; the issue's targets are read off them):
1. step time of BLUR-NPO over NPO_GDR: same model, same batches, same loop;
2. time of the combination step alone: our vectorised rule vs a per-parameter loop that calls
   .item() on every tensor (the authors' style, written here for comparison);
3. peak resident memory of a training step with each rule, each in a fresh process.

Usage: python benchmarks/unlearn_step.py [--hidden 256] [--layers 4] [--steps 10]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM

from bilevel_unlearning.models.encoding import Example
from bilevel_unlearning.unlearn.data import UnlearnData
from bilevel_unlearning.unlearn.loop import LoopSettings, Unlearner
from bilevel_unlearning.unlearn.objectives import Objective
from bilevel_unlearning.unlearn.rules import combine

REPO = Path(__file__).resolve().parents[1]
# the two methods as the shipped default config defines them: same losses, different rule
METHODS = {
    name: yaml.safe_load((REPO / "config" / "config.yaml").read_text())["methods"][name]
    for name in ("npo_gdr", "blur_npo")
}


def model(hidden: int, layers: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=2048,
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config)


def data(length: int = 128, count: int = 32) -> UnlearnData:
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(3, 2048, (2 * count, length), generator=generator).tolist()
    ex = [Example(tuple(r), tuple(r)) for r in rows]
    return UnlearnData((tuple(ex[:count]),), tuple(ex[count:]), pad_id=0)


def unlearner(name: str, hidden: int, layers: int) -> Unlearner:
    base = model(hidden, layers)
    loop = LoopSettings(epochs=1, learning_rate=1e-5, batch_size=4)
    return Unlearner(base, Objective(METHODS[name], copy.deepcopy(base)), data(), loop, out=None)


def step_seconds(name: str, hidden: int, layers: int, steps: int) -> float:
    run = unlearner(name, hidden, layers)
    batches = run._epoch_steps(1)
    run._step(batches[0], 1, 0)  # warm-up
    began = time.perf_counter()
    for i in range(steps):
        run._step(batches[i % len(batches)], 1, i + 1)
    return (time.perf_counter() - began) / steps


def authors_style_blur(
    g_f: list[torch.Tensor], g_r: list[torch.Tensor], gamma: float
) -> list[torch.Tensor]:
    """Per-parameter inner products with a .item() (a device sync) per tensor, two copies."""
    forget_sq, retain_sq, inner = 0.0, 0.0, 0.0  # all three are logged by the authors' code
    for f, r in zip(g_f, g_r, strict=True):
        forget_sq += (f * f).sum().item()
        retain_sq += (r * r).sum().item()
        inner += (f * r).sum().item()
    xi = gamma - inner / forget_sq
    return [r + xi * f for f, r in zip(g_f, g_r, strict=True)]


def combination_seconds(hidden: int, layers: int, repeats: int) -> tuple[float, float]:
    shapes = [p.shape for p in model(hidden, layers).parameters()]
    generator = torch.Generator().manual_seed(0)
    g_f = [torch.randn(s, generator=generator) for s in shapes]
    g_r = [torch.randn(s, generator=generator) for s in shapes]
    # ours works in place (the forget list is scratch), so each repeat gets fresh copies,
    # made before the clock starts
    copies = [([t.clone() for t in g_f], [t.clone() for t in g_r]) for _ in range(repeats)]
    began = time.perf_counter()
    for f, r in copies:
        combine("blur", f, r, {"gamma": 1.0})
    ours = (time.perf_counter() - began) / repeats
    began = time.perf_counter()
    for _ in range(repeats):
        authors_style_blur(g_f, g_r, 1.0)
    return ours, (time.perf_counter() - began) / repeats


def peak_rss_child(name: str, hidden: int, layers: int) -> None:
    """Run in a fresh process: a few steps, then print peak resident memory in bytes."""
    run = unlearner(name, hidden, layers)
    batches = run._epoch_steps(1)
    for i in range(3):
        run._step(batches[i], 1, i)
    print(json.dumps({"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def peak_rss(name: str, hidden: int, layers: int) -> int:
    command = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--hidden",
        str(hidden),
        "--layers",
        str(layers),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_rss"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        peak_rss_child(args.child, args.hidden, args.layers)
        return
    torch.set_num_threads(2)
    parameters = sum(p.numel() for p in model(args.hidden, args.layers).parameters())
    print(
        f"model: Llama, hidden {args.hidden}, {args.layers} layers, "
        f"{parameters / 1e6:.1f}M parameters (fp32, CPU)"
    )

    npo_gdr = step_seconds("npo_gdr", args.hidden, args.layers, args.steps)
    blur = step_seconds("blur_npo", args.hidden, args.layers, args.steps)
    print(
        f"step time: npo_gdr {npo_gdr * 1e3:.1f} ms, blur_npo {blur * 1e3:.1f} ms, "
        f"ratio {blur / npo_gdr:.3f}"
    )

    ours, theirs = combination_seconds(args.hidden, args.layers, repeats=20)
    print(
        f"combination step: vectorised {ours * 1e3:.2f} ms, per-parameter .item() loop "
        f"{theirs * 1e3:.2f} ms, speed-up {theirs / ours:.2f}x"
    )

    rss = {name: peak_rss(name, args.hidden, args.layers) for name in METHODS}
    mib = {name: value / 2**20 for name, value in rss.items()}
    print(
        f"peak RSS: npo_gdr {mib['npo_gdr']:.1f} MiB, blur_npo {mib['blur_npo']:.1f} MiB, "
        f"difference {mib['blur_npo'] - mib['npo_gdr']:.1f} MiB, "
        f"ratio {rss['blur_npo'] / rss['npo_gdr']:.3f}; "
        f"one gradient copy is {parameters * 4 / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    main()
