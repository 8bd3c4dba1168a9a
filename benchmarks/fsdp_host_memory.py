"""Host memory of an FSDP job's start models: every process loading the model and copying it
(the old path) against process 0 reading it once and the copies filled by broadcast
(placement.start_models, unlearn/sharding.sharded_copy).

Each measurement is a torchrun of 2 CPU processes (gloo) that builds what WHP under
`precision: mixed` builds: the trained model (fp32), the frozen reference (bf16) and the copy it
reinforces (fp32), all sharded with FSDP2, from a Llama-2-shaped folder written once at the
given width (vocab 32000). Each process reports how far its resident memory rose above what it
held after the imports (peak, from getrusage).

    python benchmarks/fsdp_host_memory.py [--repeats 3] [--hidden 1024] [--layers 8]

Prints the median rise per process and per node (the sum) over interleaved repeats (old, new,
old, ...), in units of the fp32 model. On a CPU the shards themselves live in host memory (2.5
models over the node, in both paths); on GPUs they live on the devices, so what a node's host
memory must hold is the rest: the old path's full copies in every process, against the one
copy process 0 reads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r"""
import copy, json, resource, sys
from pathlib import Path
import torch
from bilevel_unlearning.models.hf import load_model
from bilevel_unlearning.placement import start_models
from bilevel_unlearning.unlearn.sharding import mixed_precision_policy, shard

def rss_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

variant, folder, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
torch.distributed.init_process_group("gloo")
torch.distributed.barrier()
before = rss_kb()
if variant == "old":  # each process: load whole, copy twice, then shard the three
    model = load_model(folder, "float32", "cpu")
    reference = copy.deepcopy(model).to(torch.bfloat16)
    reinforced = copy.deepcopy(model)
    for module in (model, reference, reinforced):
        shard(module, mixed_precision_policy(torch.bfloat16))
else:
    models = start_models(folder, "mixed", "fsdp", torch.device("cpu"),
                          reference=True, reinforced=True, checkpointing=False)
torch.distributed.barrier()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rank = torch.distributed.get_rank()
(out / f"rank{rank}.json").write_text(json.dumps({"rank": rank, "rise_kb": peak - before}))
torch.distributed.destroy_process_group()
"""


def write_model(folder: Path, hidden: int, layers: int) -> int:
    """A Llama-2-shaped model of this width in `folder`; returns its fp32 size in bytes."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=hidden,
        intermediate_size=int(hidden * 2.6875),  # Llama-2-7B's 11008 / 4096
        num_hidden_layers=layers,
        num_attention_heads=hidden // 128,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder, safe_serialization=True)
    return sum(p.numel() for p in model.parameters()) * 4


def measure(variant: str, folder: Path) -> list[int]:
    """The rise of each process's resident memory, in bytes, rank order."""
    from bilevel_unlearning.runtime import torchrun_command

    with tempfile.TemporaryDirectory() as out:
        command = [*torchrun_command(2), "--no-python"]
        command += [sys.executable, "-c", WORKER, variant, str(folder), out]
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-3000:])
        rows = [json.loads((Path(out) / f"rank{r}.json").read_text()) for r in range(2)]
    return [row["rise_kb"] * 1024 for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        size = write_model(folder, args.hidden, args.layers)
        print(f"model: hidden {args.hidden}, {args.layers} layers, {size / 2**20:.0f} MiB in fp32")
        rises: dict[str, list[list[int]]] = {"old": [], "new": []}
        for _ in range(args.repeats):
            for variant in rises:  # interleaved: old, new, old, new, ...
                rises[variant].append(measure(variant, folder))
    print(f"{'path':<5} {'process 0':>10} {'process 1':>10} {'node':>8}   (fp32 models)")
    for variant, runs in rises.items():
        per_rank = [statistics.median(run[rank] for run in runs) / size for rank in range(2)]
        node = statistics.median(sum(run) for run in runs) / size
        print(f"{variant:<5} {per_rank[0]:>10.2f} {per_rank[1]:>10.2f} {node:>8.2f}")
    old = statistics.median(sum(run) for run in rises["old"])
    new = statistics.median(sum(run) for run in rises["new"])
    print(f"node rise, new / old: {new / old:.2f} (median of {args.repeats})")


if __name__ == "__main__":
    main()
