"""What the CPU kernel pins cost (bilevel_unlearning.numerics): pinned against native kernels.

Each measurement is a fresh process that pins (or not) before torch loads, as a job does,
then times the compute alone (not the imports) of the default miniature's model
(config/config.yaml's architecture, one thread):
- train: AdamW steps at the unlearning batch (4 x 128 tokens), forward and backward;
- infer: forward passes at the evaluation batch (32 x 128 tokens), no gradients.

    python benchmarks/cpu_pins.py [--repeats 5]

Prints the median seconds of each over interleaved repeats (native, pinned before, pinned
now, native, ...) so machine drift cancels, and each one's ratio to native; "before" is the
pins with torch's default (foreach) AdamW, "now" with the fused AdamW every job uses.
A whole job also spends 4-7 s importing torch and transformers, which the pins do not
change (docs/timings.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORK = r"""
import json, sys, time
from bilevel_unlearning.numerics import pin_cpu_numerics
pin_cpu_numerics(1)
import torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
config = LlamaConfig(vocab_size=2048, hidden_size=96, intermediate_size=256,
                     num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=512)
model = LlamaForCausalLM(config)
ids = torch.randint(0, 2048, (20, 32, 128))
if sys.argv[1] == "train":
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=sys.argv[2] == "fused")
    start = time.perf_counter()
    for step in range(20):
        batch = ids[step, :4]
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
else:
    start = time.perf_counter()
    with torch.no_grad():
        for step in range(20):
            model(input_ids=ids[step])
print(json.dumps({"seconds": time.perf_counter() - start,
                  "path": torch.backends.cpu.get_cpu_capability()}))
"""
# name -> (environment, AdamW form); the foreach form is what the pins ran before fused
# AdamW replaced it (its square root's bits depend on the CPU: docs/fidelity.md)
VARIANTS = {
    "native": ({"BILEVEL_NATIVE_KERNELS": "1"}, "fused"),
    "pinned, foreach AdamW (before)": ({}, "foreach"),
    "pinned, fused AdamW (now)": ({}, "fused"),
}


def measure(workload: str, variant: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "BILEVEL_NATIVE_KERNELS"}
    extra, optimizer = VARIANTS[variant]
    done = subprocess.run(
        [sys.executable, "-c", WORK, workload, optimizer],
        env={**env, **extra},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    names = list(VARIANTS)
    print(f"| workload ({args.repeats} interleaved repeats, median) | " + " | ".join(names) + " |")
    print("| --- " * (len(names) + 1) + "|")
    for workload in ("train", "infer"):
        times: dict[str, list[float]] = {v: [] for v in names}
        for _ in range(args.repeats):
            for variant in names:
                times[variant].append(measure(workload, variant)["seconds"])
        medians = {v: statistics.median(times[v]) for v in names}
        native = medians["native"]
        cells = [f"{medians[v]:.2f} s ({medians[v] / native:.2f}x)" for v in names]
        print(f"| {workload} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
