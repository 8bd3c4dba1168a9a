"""What the CPU kernel pins cost (bilevel_unlearning.numerics): pinned against native kernels.

Each measurement is a fresh process that pins (or not) before torch loads, as a job does,
then times the compute alone (not the imports) of the default miniature's model
(config/config.yaml's architecture, one thread):
- train: AdamW steps at the unlearning batch (4 x 128 tokens), forward and backward;
- infer: forward passes at the evaluation batch (32 x 128 tokens), no gradients.

    python benchmarks/cpu_pins.py [--repeats 5]

Prints the median seconds of each over interleaved repeats (native, pinned, native, ...) so
machine drift cancels, and the pinned/native ratio. A whole job also spends 4-7 s importing
torch and transformers, which the pins do not change (docs/timings.md).
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
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
VARIANTS = {"native": {"BILEVEL_NATIVE_KERNELS": "1"}, "pinned": {}}


def measure(workload: str, variant: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "BILEVEL_NATIVE_KERNELS"}
    done = subprocess.run(
        [sys.executable, "-c", WORK, workload],
        env={**env, **VARIANTS[variant]},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"| workload ({args.repeats} interleaved repeats) | native s | pinned s | ratio |")
    print("|---|---:|---:|---:|")
    for workload in ("train", "infer"):
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        paths = {}
        for _ in range(args.repeats):
            for variant in VARIANTS:
                result = measure(workload, variant)
                times[variant].append(result["seconds"])
                paths[variant] = result["path"]
        native, pinned = (statistics.median(times[v]) for v in VARIANTS)
        label = f"{workload} ({paths['native']} -> {paths['pinned']})"
        print(f"| {label} | {native:.2f} | {pinned:.2f} | {pinned / native:.2f} |")


if __name__ == "__main__":
    main()
