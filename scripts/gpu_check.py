"""GPU acceptance check: the GPU path runs, agrees with the CPU, and is fast where it matters.

    make gpu-check                                   # one CUDA GPU, no network, < 8 minutes
    python scripts/gpu_check.py --device cpu --out /tmp/gpu_check.json   # the dry mode

Three parts, each printed as a table and written to --out (default results/gpu_check.json):

1. workflow: the tiny test config (tests/config/tiny.yaml) run by Snakemake on this device in
   bfloat16 and in float32, its tables compared cell by cell with a CPU run's tables
   (--cpu-run: a finished CPU run's folder, whose data and models are reused so that only the
   unlearning, evaluation and report stages run here). Without --cpu-run the tables are
   compared with the committed config/expected/tiny/ tables.
2. step: one BLUR-NPO and one NPO_GDR optimizer step of the real unlearning loop on a randomly
   initialised Llama with Llama-2-7B's hidden size, heads and vocabulary and as many layers as
   fit beside a frozen reference (gradient checkpointing on), timed A B A B: step time ratio,
   peak memory, forget tokens/s and model FLOPs utilisation (6N FLOPs per token per trained
   forward+backward pass, 2N per reference forward, N the parameters less the input
   embedding, over the GPU's dense bf16 peak from KNOWN_PEAK_TFLOPS or --peak-tflops).
   Then the cost of `deterministic: true`: the BLUR step with torch's deterministic
   algorithms off and on, A B A B (the cuBLAS workspace is fixed for both, so the ratio is
   the algorithms' cost; an op without a deterministic CUDA kernel is reported by name).
3. combine: the rule's combination step alone, vectorised (rules.combine: fused foreach
   kernels, one host sync) vs benchmarks/unlearn_step.authors_style_blur (a .item(), i.e. a
   device sync, per parameter and product, as the authors' code does), on gradients of the
   step's model shapes; both must give the same direction.

4. acceptance (scripts/gpu_acceptance.py): the paper config's rehearsal slice on the GPU(s)
   through the real launcher in `precision: mixed`; NCCL collectives, a DDP learning-rate
   schedule and an FSDP kill-and-resume over 2 processes (on the first 2 GPUs; on the CPU
   with gloo when fewer are visible); the MIA suite's likelihood pass at Llama-2-7B's width,
   all its layers, at 4096 tokens and batch 32.

Every part ends as pass, fail or skip lines under "checks"; the exit code is 1 when any check
fails. The dry mode (--device cpu) runs parts 2-4 at tiny sizes and the workflows as dry runs
(snakemake -n), so the script is exercised by `make test` and cannot rot.
"""

from __future__ import annotations

import argparse
import copy
import csv
import functools
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# deterministic cuBLAS needs its workspace fixed before CUDA starts (numerics.DETERMINISTIC_PINS)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import gpu_acceptance as acceptance

from benchmarks.unlearn_step import authors_style_blur
from bilevel_unlearning.io import write_json
from bilevel_unlearning.models.encoding import Example
from bilevel_unlearning.models.hf import enable_activation_checkpointing
from bilevel_unlearning.runtime import device_name
from bilevel_unlearning.unlearn.data import UnlearnData
from bilevel_unlearning.unlearn.loop import LoopSettings, Unlearner
from bilevel_unlearning.unlearn.objectives import Objective
from bilevel_unlearning.unlearn.rules import combine

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "config" / "tiny.yaml"
TABLES = ("table_1_muse.csv", "table_2_wmdp.csv", "table_3_tofu.csv")

# Dense bf16 peak (TFLOP/s, no sparsity) by a substring of torch.cuda.get_device_name().
KNOWN_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,  # SXM; the PCIe card is 756: pass --peak-tflops
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A6000": 155.0,
    "L4": 121.0,
    "A10": 125.0,
}
LLAMA2_7B = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
    "layers": 32,
    "seq_len": 2048,
}
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "vocab_size": 256,
    "layers": 2,
    "seq_len": 64,
}
METHODS = {
    "blur_npo": {"forget_loss": "npo", "retain_loss": "nll", "rule": "blur", "gamma": 1.0},
    "npo_gdr": {"forget_loss": "npo", "retain_loss": "nll", "rule": "weighted_sum", "gamma": 1.0},
}
METHODS = {name: {**config, "beta": 0.1} for name, config in METHODS.items()}
# Bytes per parameter of a training step in bf16: weights, gradient, BLUR's g_F buffer, AdamW's
# two moments (in the parameters' dtype), the frozen reference.
BYTES_PER_PARAM = 2 + 2 + 2 + 4 + 2
ACTIVATION_MARGIN = 12 * 2**30  # checkpointed activations, logits, allocator slack


def peak_tflops(name: str, override: float | None) -> float | None:
    if override is not None:
        return override
    return next((v for k, v in KNOWN_PEAK_TFLOPS.items() if k in name), None)


def layer_params(shape: dict[str, int]) -> int:
    h, i = shape["hidden_size"], shape["intermediate_size"]
    return 4 * h * h + 3 * h * i + 2 * h


def layers_that_fit(shape: dict[str, int], free_bytes: int) -> int:
    """The most decoder layers (up to the real model's) whose training state fits."""
    embeddings = 2 * shape["vocab_size"] * shape["hidden_size"] * BYTES_PER_PARAM
    room = free_bytes - ACTIVATION_MARGIN - embeddings
    return max(1, min(shape["layers"], room // (layer_params(shape) * BYTES_PER_PARAM)))


def median_of(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_model(shape: dict[str, int], layers: int, device: torch.device, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=shape["vocab_size"],
        hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"],
        num_hidden_layers=layers,
        num_attention_heads=shape["num_attention_heads"],
        num_key_value_heads=shape["num_key_value_heads"],
        max_position_embeddings=max(4096, shape["seq_len"]),
        use_cache=False,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model


def random_data(shape: dict[str, int], count: int) -> UnlearnData:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, shape["vocab_size"], (2 * count, shape["seq_len"]), generator=generator)
    rows = [Example(tuple(r), tuple(r)) for r in ids.tolist()]
    return UnlearnData((tuple(rows[:count]),), tuple(rows[count:]), pad_id=0)


# -- part 2: one optimizer step of BLUR-NPO and NPO_GDR ------------------------------------------


def step_check(
    device: torch.device, shape: dict[str, int], micro: int, repeats: int, peak: float | None
) -> dict[str, Any]:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cuda":
        layers = layers_that_fit(shape, torch.cuda.mem_get_info(device)[0])
    else:
        layers = shape["layers"]
    model = random_model(shape, layers, device, dtype)
    reference = copy.deepcopy(model)
    enable_activation_checkpointing(model)
    objectives = {name: Objective(config, reference) for name, config in METHODS.items()}
    settings = LoopSettings(epochs=1, learning_rate=1e-5, batch_size=micro)
    with tempfile.TemporaryDirectory() as out:
        loop = Unlearner(
            model, objectives["blur_npo"], random_data(shape, micro), settings, Path(out)
        )
        group = loop._epoch_steps(1)[0]
        times: dict[str, list[float]] = {name: [] for name in METHODS}
        peaks: dict[str, float] = {}
        for repeat in range(repeats + 1):  # the first round warms up and is not timed
            for name in METHODS:  # A B A B: drift of the machine hits both alike
                loop.objective = objectives[name]
                synchronize(device)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                began = time.perf_counter()
                loop._step(group, epoch=1, step=repeat + 1)
                synchronize(device)
                if repeat:
                    times[name].append(time.perf_counter() - began)
                if device.type == "cuda":
                    peaks[name] = torch.cuda.max_memory_allocated(device) / 2**30
        loop.objective = objectives["blur_npo"]
        cost = determinism_cost(functools.partial(loop._step, group, 1), device, repeats)
    params = sum(p.numel() for p in model.parameters())
    flop_params = params - shape["vocab_size"] * shape["hidden_size"]  # no FLOPs in the lookup
    tokens = micro * shape["seq_len"]
    # forget and retain passes trained (6N each), one reference forward on the forget batch
    flops = (6 * 2 + 2) * flop_params * tokens
    result: dict[str, Any] = {"layers": layers, "params": params, "tokens_per_step": tokens}
    for name in METHODS:
        seconds = median_of(times[name])
        result[name] = {
            "step_s": seconds,
            "forget_tokens_per_s": tokens / seconds,
            "peak_gib": peaks.get(name),
            "mfu": None if peak is None else flops / seconds / (peak * 1e12),
        }
    ratios = [b / n for b, n in zip(times["blur_npo"], times["npo_gdr"], strict=True)]
    result["step_time_ratio_blur_over_npo_gdr"] = median_of(ratios)
    result["deterministic"] = cost
    del model, reference, loop
    return result


def determinism_cost(step: Callable[[int], Any], device: torch.device, repeats: int) -> dict:
    """The step's time with torch's deterministic algorithms off and on, A B A B (median
    ratio); an op without a deterministic kernel is named instead of a ratio."""
    times: dict[bool, list[float]] = {False: [], True: []}
    try:
        for repeat in range(repeats + 1):
            for deterministic in (False, True):
                torch.use_deterministic_algorithms(deterministic)
                synchronize(device)
                began = time.perf_counter()
                step(100 + 2 * repeat + deterministic)
                synchronize(device)
                if repeat:
                    times[deterministic].append(time.perf_counter() - began)
    except RuntimeError as error:  # an op with no deterministic implementation on this device
        return {"ratio": None, "error": str(error).splitlines()[0]}
    finally:
        torch.use_deterministic_algorithms(False)
    ratios = [on / off for off, on in zip(times[False], times[True], strict=True)]
    return {
        "ratio": median_of(ratios),
        "off_s": median_of(times[False]),
        "on_s": median_of(times[True]),
    }


# -- part 3: the combination step alone -----------------------------------------------------------


def combine_check(
    device: torch.device, shape: dict[str, int], layers: int, repeats: int
) -> dict[str, Any]:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = random_model(shape, layers, torch.device("meta"), dtype)
    shapes = [p.shape for p in model.parameters()]
    generator = torch.Generator(device=device).manual_seed(0)
    g_f = [torch.randn(s, device=device, dtype=dtype, generator=generator) for s in shapes]
    g_r0 = [torch.randn(s, device=device, dtype=dtype, generator=generator) for s in shapes]
    g_r = [g.clone() for g in g_r0]
    config = METHODS["blur_npo"]

    def vectorised() -> None:
        combine("blur", [g.clone() for g in g_f], g_r, config)  # blur uses g_F as scratch

    candidates: dict[str, Callable[[], Any]] = {
        "vectorised": vectorised,
        "per_parameter_item": lambda: authors_style.append(authors_style_blur(g_f, g_r, 1.0)),
    }
    times: dict[str, list[float]] = {name: [] for name in candidates}
    outputs: dict[str, list[torch.Tensor]] = {}
    authors_style: list[list[torch.Tensor]] = []  # returns new tensors: the last is compared
    for repeat in range(repeats + 1):  # the first round warms up and is not timed
        for name, run in candidates.items():  # A B A B
            torch._foreach_copy_(g_r, g_r0)  # both start from the same g_R
            synchronize(device)
            began = time.perf_counter()
            run()
            synchronize(device)
            if repeat:
                times[name].append(time.perf_counter() - began)
            result = g_r if name == "vectorised" else authors_style.pop()
            outputs[name] = [g.float().clone() for g in result[:4]]
    difference = max(
        (a - b).abs().max().item() / max(1e-12, b.abs().max().item())
        for a, b in zip(outputs["vectorised"], outputs["per_parameter_item"], strict=True)
    )
    ratios = [s / v for s, v in zip(times["per_parameter_item"], times["vectorised"], strict=True)]
    return {
        "tensors": len(shapes),
        "vectorised_s": median_of(times["vectorised"]),
        "per_parameter_item_s": median_of(times["per_parameter_item"]),
        "speedup": median_of(ratios),
        "max_relative_difference": difference,
    }


# -- part 1: the tiny workflow on this device ----------------------------------------------------


def read_table(path: Path) -> dict[tuple[str, str], str]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    return {
        (row[0], column): cell
        for row in body
        for column, cell in zip(header[1:], row[1:], strict=True)
    }


def table_differences(ours: Path, theirs: Path) -> dict[str, float]:
    """Largest absolute difference of the numeric cells of each table (NaN: rows differ)."""
    found = {}
    for name in TABLES:
        a, b = ours / name, theirs / name
        if not (a.is_file() and b.is_file()):
            continue
        cells_a, cells_b = read_table(a), read_table(b)
        if cells_a.keys() != cells_b.keys():
            found[name] = math.nan
            continue
        worst = 0.0
        for key, value in cells_a.items():
            try:
                worst = max(worst, abs(float(value) - float(cells_b[key])))
            except ValueError:
                continue
        found[name] = worst
    return found


def snakemake(workdir: Path, precision: str, cores: int, dry: bool) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "workflow" / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(TINY_CONFIG),
        "--config",
        f"precision={precision}",
        "--cores",
        str(cores),
        "--rerun-incomplete",
        *(["--dry-run"] if dry else []),
        "--",
        *(f"paper_figures/{t}" for t in TABLES),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=3600)


def seed_from_cpu_run(cpu_run: Path, workdir: Path) -> None:
    """The CPU run's data and models (file times kept, so Snakemake reuses them)."""
    for benchmark in sorted((cpu_run / "results").iterdir()):
        for stage in ("data", "models"):
            source = benchmark / stage
            if source.is_dir():
                shutil.copytree(source, workdir / "results" / benchmark.name / stage)
    for shared in ("tokenizer", "base"):
        source = cpu_run / "results" / shared
        if source.is_dir():
            shutil.copytree(source, workdir / "results" / shared)


def workflow_check(
    root: Path, cpu_run: Path | None, cores: int, dry: bool, precisions: Sequence[str]
) -> dict[str, Any]:
    reference = (cpu_run / "paper_figures") if cpu_run else REPO / "config/expected/tiny"
    found: dict[str, Any] = {"compared_with": str(reference)}
    for precision in precisions:
        workdir = root / precision
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        shutil.copytree(REPO / "config", workdir / "config")  # the Snakefile's configfile
        if cpu_run is not None:
            seed_from_cpu_run(cpu_run, workdir)
        began = time.perf_counter()
        done = snakemake(workdir, precision, cores, dry)
        entry: dict[str, Any] = {
            "returncode": done.returncode,
            "seconds": time.perf_counter() - began,
        }
        if done.returncode:
            entry["error"] = (done.stdout + done.stderr)[-3000:]
        elif not dry:
            entry["max_abs_difference"] = table_differences(workdir / "paper_figures", reference)
        found[precision] = entry
    return found


# -- the report ----------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    print(f"device: {report['device']}   peak bf16 TFLOP/s: {report['peak_tflops']}")
    step = report["step"]
    print(
        f"\nstep ({step['layers']} layers, {step['params'] / 1e9:.2f}B parameters, "
        f"{step['tokens_per_step']} forget tokens a step)"
    )
    print(f"{'method':<10} {'step s':>9} {'tokens/s':>10} {'peak GiB':>9} {'MFU':>7}")
    for name in METHODS:
        row = step[name]
        peak = "-" if row["peak_gib"] is None else f"{row['peak_gib']:.1f}"
        mfu = "-" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%"
        print(
            f"{name:<10} {row['step_s']:>9.4f} {row['forget_tokens_per_s']:>10.0f} "
            f"{peak:>9} {mfu:>7}"
        )
    print(
        f"step time BLUR / NPO_GDR (median of A B pairs): "
        f"{step['step_time_ratio_blur_over_npo_gdr']:.3f}"
    )
    cost = step["deterministic"]
    if cost["ratio"] is None:
        print(f"deterministic algorithms: FAILED, {cost['error']}")
    else:
        print(f"deterministic algorithms: step time x{cost['ratio']:.3f} (median of A B pairs)")
    comb = report["combine"]
    print(
        f"\ncombine ({comb['tensors']} tensors): vectorised {comb['vectorised_s']:.4f} s, "
        f".item() per parameter {comb['per_parameter_item_s']:.4f} s, speedup "
        f"{comb['speedup']:.1f}x, max relative difference {comb['max_relative_difference']:.1e}"
    )
    print(f"\nworkflow (tiny config; tables against {report['workflow']['compared_with']})")
    for precision in report["precisions"]:
        entry = report["workflow"][precision]
        status = "ok" if entry["returncode"] == 0 else "FAILED"
        diffs = entry.get("max_abs_difference", {})
        text = ", ".join(f"{k.split('_')[1]}: {v:.2f}" for k, v in diffs.items()) or "dry run"
        print(f"{precision:<9} {status:<7} {entry['seconds']:>6.0f} s   max |diff| {text}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (dry mode)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "gpu_check.json")
    parser.add_argument("--cpu-run", type=Path, help="a finished CPU run of the tiny config")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak")
    parser.add_argument("--repeats", type=int, default=3, help="timed A B rounds")
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--cores", type=int, default=8, help="Snakemake cores, part 1")
    parser.add_argument(
        "--skip-workflow", action="store_true", help="parts 2 and 3 only (no Snakemake)"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run with --device cpu for the dry mode")
    dry = device.type != "cuda"
    shape = TINY if dry else LLAMA2_7B
    name = device_name(device)
    peak = peak_tflops(name, args.peak_tflops)
    report: dict[str, Any] = {
        "device": name,
        "dry_run": dry,
        "peak_tflops": peak,
        "torch": torch.__version__,
        "precisions": ["bfloat16", "float32"],
    }
    report["step"] = step_check(device, shape, args.micro_batch, args.repeats, peak)
    report["combine"] = combine_check(device, shape, report["step"]["layers"], args.repeats)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if args.skip_workflow:
        report["workflow"] = {"compared_with": "skipped"}
        report["precisions"] = []
    else:
        root = args.out.parent / "gpu_check_runs"
        report["workflow"] = workflow_check(
            root, args.cpu_run, args.cores, dry, report["precisions"]
        )
    report["checks"] = {**part_checks(report), **acceptance_checks(device, args, dry)}
    write_json(args.out, report)
    print_report(report)
    print_checks(report["checks"])
    return 1 if any(c["status"] == "fail" for c in report["checks"].values()) else 0


def part_checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Parts 1-3 as pass or fail lines."""
    step, combine = report["step"], report["combine"]
    peaks = ", ".join(
        f"{name} {step[name]['peak_gib']:.1f} GiB" for name in METHODS if step[name]["peak_gib"]
    )
    checks = {
        "step_7b_width": acceptance.result(
            "pass",
            "toy width (dry mode)"
            if report["dry_run"]
            else f"{step['layers']} layers at Llama-2-7B's width, one GPU, peak {peaks}",
        ),
        "deterministic": acceptance.result(
            "fail" if step["deterministic"]["ratio"] is None else "pass",
            step["deterministic"].get("error") or f"x{step['deterministic']['ratio']:.3f}",
        ),
        "combine": acceptance.result(
            "pass" if combine["max_relative_difference"] <= 1e-2 else "fail",
            f"max relative difference {combine['max_relative_difference']:.1e}",
        ),
    }
    for precision in report["precisions"]:
        entry = report["workflow"][precision]
        status = "pass" if entry["returncode"] == 0 else "fail"
        checks[f"workflow_{precision}"] = acceptance.result(status, f"{entry['seconds']:.0f} s")
    return checks


def acceptance_checks(device: torch.device, args: Any, dry: bool) -> dict[str, dict[str, Any]]:
    """Part 4 (scripts/gpu_acceptance.py): the GPU path as the cluster runs it."""
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    root = args.out.parent / "gpu_check_acceptance"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    shape, length, batch = (TINY, 256, 4) if dry else (LLAMA2_7B, 4096, 32)
    dtype = torch.float32 if dry else torch.bfloat16
    model = random_model(shape, shape["layers"], device, dtype).eval()
    checks = {"evaluation_7b": acceptance.evaluation_check(device, model, length, batch)}
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    checks["collectives"] = acceptance.collectives_check(gpus)
    checks["ddp_schedule"] = acceptance.ddp_schedule_check(gpus, root)
    checks["fsdp_resume"] = acceptance.fsdp_resume_check(gpus, root)
    if args.skip_workflow:
        checks["rehearsal"] = acceptance.result("skip", "--skip-workflow")
    else:
        checks["rehearsal"] = acceptance.rehearsal_check(root, gpus, dry)
    return checks


def print_checks(checks: dict[str, dict[str, Any]]) -> None:
    print("\nchecks")
    for name, check in checks.items():
        print(f"{check['status'].upper():<5} {name:<17} {check['detail']}")
    failed = [name for name, check in checks.items() if check["status"] == "fail"]
    passed = sum(check["status"] == "pass" for check in checks.values())
    print(
        f"{passed} of {len(checks)} passed" + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )


if __name__ == "__main__":
    sys.exit(main())
