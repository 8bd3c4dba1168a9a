"""The GPU path's acceptance checks (part 4 of scripts/gpu_check.py), each pass, fail or skip:

- rehearsal: the paper config's rehearsal slice (one method per benchmark, as
  tests/workflow/test_rehearsal_slice.py) through the hub mirror, the real launcher and
  `precision: mixed`, on this machine's GPUs (MUSE and TOFU on 2 when 2 are visible, else 1);
- collectives: all_reduce, broadcast and all_gather over 2 processes, NCCL on 2 GPUs;
- ddp_schedule: BLUR-NPO under DDP over 2 processes with a linear schedule: every step's rate
  is lr x (1 - step / total), never stepped once per process;
- fsdp_resume: an FSDP2 run killed after its first epoch's checkpoint and resumed from its
  sharded state ends where an uninterrupted run ends;
- evaluation_7b: the MIA suite's likelihood pass (log-probability and vocabulary moments per
  token) of a model of Llama-2-7B's width, all its layers, at its longest texts (4096 tokens),
  batch 32, in bf16: it must finish within the GPU's memory.

With one GPU, the 2-process checks run on the CPU (gloo), said in their line; with none (the
dry mode), everything runs at toy sizes and the rehearsal is a dry run, so `make test` keeps
the script from rotting.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
REHEARSAL_TARGETS = (
    "results/muse_news/eval/ga/none/epoch_1.json",
    "results/wmdp/eval/rmu/none/epoch_1.json",
    "results/muse_news/eval/target/none/epoch_0.json",
    "results/tofu/unlearn/npo_gdr-forget10/train_log.jsonl",
)
REHEARSED = ("unlearn_muse_news", "unlearn_muse_books", "unlearn_tofu")

COLLECTIVES = r"""
import json, os, torch
import torch.distributed as dist
cuda = torch.cuda.is_available()
dist.init_process_group("nccl" if cuda else "gloo")
rank, world = dist.get_rank(), dist.get_world_size()
device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
if cuda:
    torch.cuda.set_device(device)
summed = torch.full((1024,), float(rank + 1), device=device)
dist.all_reduce(summed)
sent = torch.arange(1024.0, device=device) if rank == 0 else torch.zeros(1024, device=device)
dist.broadcast(sent, 0)
gathered = [torch.zeros(4, device=device) for _ in range(world)]
dist.all_gather(gathered, torch.full((4,), float(rank), device=device))
ok = (
    bool((summed == world * (world + 1) / 2).all())
    and torch.equal(sent, torch.arange(1024.0, device=device))
    and all(bool((g == r).all()) for r, g in enumerate(gathered))
)
if rank == 0:
    print(json.dumps({"ok": ok, "backend": dist.get_backend(), "world": world}))
dist.destroy_process_group()
"""


def result(status: str, detail: str, **numbers: Any) -> dict[str, Any]:
    return {"status": status, "detail": detail, **numbers}


def two_process_env(gpus: int) -> tuple[dict[str, str], str]:
    """The environment of a 2-process check: the first 2 GPUs (NCCL), or the CPU (gloo)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(TESTS)])}
    if gpus >= 2:
        return {**env, "CUDA_VISIBLE_DEVICES": "0,1"}, "2 GPUs, NCCL"
    return {**env, "CUDA_VISIBLE_DEVICES": ""}, "2 CPU processes, gloo (fewer than 2 GPUs)"


def torchrun(
    command: Sequence[str], env: dict[str, str], timeout: int = 900
) -> subprocess.CompletedProcess:
    """`command` (a Python script and its arguments) in 2 processes on a free local port."""
    from bilevel_unlearning.runtime import torchrun_command

    return subprocess.run(
        [*torchrun_command(2), *command],
        capture_output=True,
        text=True,
        env=env,
        cwd=TESTS,
        timeout=timeout,
    )


def collectives_check(gpus: int) -> dict[str, Any]:
    env, where = two_process_env(gpus)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "collectives.py"
        script.write_text(COLLECTIVES)
        done = torchrun([str(script)], env)
    if done.returncode:
        return result("fail", f"{where}: {done.stderr.strip().splitlines()[-1:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    status = "pass" if report["ok"] else "fail"
    return result(status, f"{where}: all_reduce, broadcast, all_gather over {report['world']}")


def train_log(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def ddp_schedule_check(gpus: int, root: Path) -> dict[str, Any]:
    """8 forget examples at global batch 4 for 2 epochs: 4 optimizer steps, a linear decay."""
    env, where = two_process_env(gpus)
    out = root / "ddp_schedule"
    settings = json.dumps({"schedule": "linear"})
    done = torchrun(
        [str(TESTS / "unlearn_ddp_worker.py"), str(out), "4", "8", "null", settings], env
    )
    if done.returncode:
        return result("fail", f"{where}: {done.stderr[-600:]}")
    rates = [entry["learning_rate"] for entry in train_log(out)]
    total = len(rates)
    expected = [rates[0] * (1 - step / total) for step in range(total)]
    ok = all(math.isclose(r, e, rel_tol=1e-9) for r, e in zip(rates, expected, strict=True))
    shown = ", ".join(f"{r:.2e}" for r in rates)
    return result("pass" if ok and rates[-1] > 0 else "fail", f"{where}: rates {shown}")


def fsdp_resume_check(gpus: int, root: Path) -> dict[str, Any]:
    """Straight 3 epochs, against 1 epoch, a kill, and a resume to 3 (tests/fsdp_worker.py)."""
    from safetensors.torch import load_file

    from bilevel_unlearning.unlearn.checkpoints import epoch_folder

    env, where = two_process_env(gpus)
    worker = str(TESTS / "fsdp_worker.py")
    straight, resumed = root / "fsdp_straight", root / "fsdp_resumed"
    runs = [
        torchrun([worker, "blur_npo", str(straight), "3"], env),
        torchrun([worker, "blur_npo", str(resumed), "3", "1"], env),  # exits after epoch 1
        torchrun([worker, "blur_npo", str(resumed), "3"], env),
    ]
    if runs[0].returncode or runs[2].returncode or runs[1].returncode == 0:
        failed = next(r for r in runs if r.returncode) if runs[1].returncode else runs[1]
        return result("fail", f"{where}: {failed.stderr[-600:]}")
    a = load_file(epoch_folder(straight, 3) / "model.safetensors")
    b = load_file(epoch_folder(resumed, 3) / "model.safetensors")
    gap = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    status = "pass" if a.keys() == b.keys() and gap <= 1e-6 else "fail"
    return result(status, f"{where}: killed after epoch 1, resumed; max |diff| {gap:.1e}", gap=gap)


def evaluation_check(
    device: torch.device, model: torch.nn.Module, length: int, batch: int
) -> dict[str, Any]:
    """The MIA suite's per-token statistics over `batch` texts of `length` tokens."""
    from bilevel_unlearning.evaluation.likelihood import labelled_token_stats
    from bilevel_unlearning.models.encoding import Example

    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(1, vocab, (batch, length), generator=generator).tolist()
    examples = [Example(tuple(row), tuple(row)) for row in ids]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    try:
        stats = labelled_token_stats(model, examples, pad_id=0, batch_size=batch)
    except torch.OutOfMemoryError as error:
        return result("fail", f"out of memory: {str(error).splitlines()[0]}")
    seconds = time.perf_counter() - began
    finite = all(math.isfinite(v) for row in stats for triple in row for v in triple)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    shown = "-" if peak is None else f"{peak:.1f} GiB"
    detail = f"{batch} x {length} tokens in {seconds:.1f} s, peak {shown}"
    return result("pass" if finite else "fail", detail, seconds=seconds, peak_gib=peak)


def rehearsal_check(root: Path, gpus: int, dry: bool) -> dict[str, Any]:
    """The rehearsal slice on this machine: MUSE and TOFU on min(2, GPUs) processes."""
    run, hub = root / "rehearsal" / "run", root / "rehearsal" / "hub"  # mirror: ../hub
    if run.exists():
        shutil.rmtree(run)
    shutil.copytree(REPO / "config", run / "config")  # the profile's configfiles
    cli = [sys.executable, "-m", "bilevel_unlearning.cli"]
    configs = [str(REPO / "config/paper.yaml"), str(REPO / "config/rehearsal.yaml")]
    gated = run / "gated" / "bio_remove_dataset.jsonl"
    hub_command = [*cli, "rehearsal-hub", "--configfile", *configs, "--out", str(hub)]
    made = subprocess.run(
        [*hub_command, "--bio-forget-file", str(gated)],
        capture_output=True,
        text=True,
    )
    if made.returncode:
        return result("fail", f"rehearsal-hub: {made.stderr[-600:]}")
    processes = max(1, min(2, gpus)) if not dry else 2
    resources = [f"{rule}:gpus={processes}" for rule in REHEARSED]
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow/Snakefile")]
    command += ["--directory", str(run), "--profile", str(REPO / "profiles/rehearsal")]
    command += ["--set-resources", *resources, *(["--dry-run"] if dry else []), "--"]
    began = time.perf_counter()
    done = subprocess.run(
        [*command, *REHEARSAL_TARGETS], capture_output=True, text=True, cwd=REPO, timeout=3600
    )
    seconds = time.perf_counter() - began
    if done.returncode:
        return result("fail", f"snakemake: {(done.stdout + done.stderr)[-800:]}")
    if dry:
        return result("pass", "dry run (no GPU): the slice plans", seconds=seconds)
    scored = [json.loads((run / t).read_text()) for t in REHEARSAL_TARGETS if "/eval/" in t]
    values = [v for r in scored for v in r["metrics"].values() if isinstance(v, float)]
    ok = values and all(math.isfinite(v) for v in values)
    detail = f"{processes} process(es) for MUSE and TOFU, mixed, in {seconds:.0f} s"
    return result("pass" if ok else "fail", detail, seconds=seconds)
