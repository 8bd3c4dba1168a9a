"""Peak memory of a likelihood pass over long texts (PrivLeak's Min-K% / the MIA suite): the
bounded pass (evaluation.likelihood: token-budget batches, log-probabilities over spans of
positions) against the whole pass (every position's log-softmax over the vocabulary at once,
what the code did before).

The model is a Llama of the real vocabulary (32000) at toy width, so the vocabulary-sized
tensors dominate as they do for a 7B model; texts of 2048 tokens at batch 4 (the whole pass
at 8 x 4096 is killed for memory on this 24 GiB machine), and the bounded pass alone at
8 x 8192.

    python benchmarks/likelihood_memory.py [--repeats 3]

Each measurement is a fresh process (peak resident memory, ru_maxrss); repeats interleave
whole, bounded, whole, ... and the medians are printed with their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

WORK = r"""
import json, resource, sys
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from bilevel_unlearning.evaluation import likelihood
from bilevel_unlearning.models.encoding import Example

torch.manual_seed(0)
config = LlamaConfig(vocab_size=32000, hidden_size=64, intermediate_size=128,
                     num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=8192)
model = LlamaForCausalLM(config).eval()
texts, length = int(sys.argv[2]), int(sys.argv[3])
examples = [Example(tuple(range(1, length + 1)), tuple(range(1, length + 1)))] * texts
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
budget = (1 << 40, 1 << 40) if sys.argv[1] == "whole" else (likelihood.BATCH_TOKENS,
                                                           likelihood.LOGPROB_VALUES)
with torch.no_grad():
    for _ in likelihood._scored_batches(model, examples, 0, texts, True, budget):
        pass
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mib": peak / 1024, "added_mib": (peak - before) / 1024}))
"""


def measure(mode: str, texts: int = 4, length: int = 2048) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", WORK, mode, str(texts), str(length)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    added: dict[str, list[float]] = {"whole": [], "bounded": []}
    for _ in range(args.repeats):
        for mode in added:
            added[mode].append(measure(mode)["added_mib"])
    whole, bounded = (statistics.median(added[m]) for m in ("whole", "bounded"))
    print(f"4 texts x 2048 tokens, vocabulary 32000, {args.repeats} interleaved repeats")
    print(f"whole pass:   {whole:8.0f} MiB added at peak (median)")
    print(f"bounded pass: {bounded:8.0f} MiB added at peak (median)")
    print(f"ratio bounded/whole: {bounded / whole:.3f}")
    long = measure("bounded", 8, 8192)["added_mib"]
    print(
        f"bounded pass, 8 texts x 8192 tokens: {long:.0f} MiB "
        "(the whole pass: about 8x its 4 x 2048 figure)"
    )


if __name__ == "__main__":
    main()
