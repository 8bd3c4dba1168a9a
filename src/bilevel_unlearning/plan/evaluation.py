"""GPU-hours of the evaluations: those `snakemake all` runs (what the tables, figures and
manifest read) and those `snakemake all_epochs` adds, beside the unlearning runs'.

An evaluation's wall time on one GPU: start-up, reading the published weights, the scored
tokens' forward passes (2 x params x tokens at peak x MFU, prompts' prefill included) and
greedy decoding, which reads every weight once per generated token and batch (memory-bound:
weight bytes over HBM bandwidth). The workloads are the real benchmarks' published sizes,
rounded (EVAL_WORKLOADS); what they count is stated beside each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.plan.architecture import resolve_architecture
from bilevel_unlearning.plan.memory import DEFAULTS, DTYPE_BYTES, GPUS, PRECISIONS


@dataclass(frozen=True)
class EvalWorkload:
    """What one evaluation of a benchmark computes."""

    scored_tokens: int  # likelihood passes: texts, answers, choices (with their prompts)
    prompts: int  # generations
    new_tokens: int  # greedy tokens per generation


EVAL_WORKLOADS: dict[str, EvalWorkload] = {
    # MUSE (per corpus): PrivLeak's MIA suite over the forget, retain and holdout texts, about
    # 100 each scored whole (~2,048 tokens; SPEC 5), plus the KnowMem and VerbMem prompts'
    # prefill; generations: 100 VerbMem continuations of 128 tokens and 200 KnowMem answers
    # (forget and retain QA) of 32, counted as 128-token decodes for all 300 (an upper bound)
    "muse": EvalWorkload(scored_tokens=3 * 100 * 2048 + 300 * 512, prompts=300, new_tokens=128),
    # TOFU (forget10): the forget, retain, real-authors and world-facts items (400, 400, 100,
    # 117) with the correct, paraphrased and 5 perturbed answers (~96 chat tokens each);
    # ROUGE's greedy answers of 200 tokens for each item
    "tofu": EvalWorkload(scored_tokens=1017 * 7 * 96, prompts=1017, new_tokens=200),
    # WMDP: lm-eval's four continuations per question, wmdp-bio 1,273 (~250 tokens each),
    # wmdp-cyber 1,987 (~700) and MMLU 14,042 (~120); no generation
    "wmdp": EvalWorkload(
        scored_tokens=4 * (1273 * 250 + 1987 * 700 + 14042 * 120), prompts=0, new_tokens=0
    ),
}
EVAL_STARTUP_S = 60.0  # imports, CUDA, the tokenizer; no launcher (one process)

EVAL_ASSUMPTIONS = (
    "evaluations: one GPU each; 60 s start-up; the published weights (compute dtype) read at "
    "2 GB/s; 2 x params x scored tokens at peak x MFU; greedy decoding memory-bound, each new "
    "token of each batch reading every weight once (H100 3.35 TB/s); workloads from the real "
    "benchmarks' published sizes, rounded (plan/evaluation.py).",
)


def evaluation_seconds(config: Mapping[str, Any], benchmark: str, model: Any) -> float:
    """Wall seconds of one evaluation of `benchmark` on one GPU."""
    architecture = resolve_architecture(model)
    compute_dtype = PRECISIONS[config["precision"]][2]
    gpu = GPUS[DEFAULTS["gpu"]]
    work = EVAL_WORKLOADS[bench(benchmark).family]
    weight_bytes = architecture.params() * DTYPE_BYTES[compute_dtype]
    flops = 2 * architecture.matmul_params() * work.scored_tokens
    forward = flops / (gpu.peak_flops[compute_dtype] * float(DEFAULTS["mfu"]))
    batch = int(config["evaluate"][benchmark].get("batch_size", 32))
    decode_steps = work.new_tokens * math.ceil(work.prompts / batch)
    decode = decode_steps * weight_bytes / (gpu.memory_tb_s * 1e12)
    read = weight_bytes / (float(DEFAULTS["read_gb_s"]) * 1e9)
    return EVAL_STARTUP_S + read + forward + decode


@dataclass(frozen=True)
class EvalCount:
    benchmark: str
    requested: int  # by `all`: what the outputs read
    every_epoch: int  # by `all_epochs`
    seconds: float  # one evaluation

    @property
    def hours(self) -> float:
        return self.requested * self.seconds / 3600

    @property
    def every_epoch_hours(self) -> float:
        return self.every_epoch * self.seconds / 3600


def evaluation_counts(config: Mapping[str, Any]) -> list[EvalCount]:
    """Per benchmark: the evaluations `all` and `all_epochs` request, and one's cost."""
    from bilevel_unlearning.plan.workload import start_model
    from bilevel_unlearning.report.jobs import (
        evaluation_results,
        figure_jobs,
        part_results,
        table_jobs,
    )
    from bilevel_unlearning.runs import evaluations

    read = evaluation_results(part_results(table_jobs(config), figure_jobs(config), "paper"))
    counts = []
    for benchmark in config["benchmarks"]:
        requested = sum(f"/{benchmark}/eval/" in path for path in read)
        seconds = evaluation_seconds(config, benchmark, start_model(config, benchmark))
        every = len(evaluations(config, benchmark))
        counts.append(EvalCount(benchmark, requested, every, seconds))
    return counts


def evaluation_lines(counts: list[EvalCount], unlearning_hours: float) -> list[str]:
    """The evaluation table and the totals against the paper config's goal (at most 30
    GPU-hours, evaluation at most a third)."""
    lines = [
        "Evaluations (one GPU each):",
        f"{'benchmark':<12}{'all':>6}{'each':>9}{'GPU-h':>8}{'all_epochs':>12}{'GPU-h':>8}",
    ]
    for c in counts:
        lines.append(
            f"{c.benchmark:<12}{c.requested:>6}{c.seconds / 60:>7.1f} m{c.hours:>8.1f}"
            f"{c.every_epoch:>12}{c.every_epoch_hours:>8.1f}"
        )
    evaluation = sum(c.hours for c in counts)
    total = unlearning_hours + evaluation
    share = evaluation / total if total else 0.0
    lines += [
        "",
        f"GPU-hours (snakemake all): unlearning {unlearning_hours:,.1f} + evaluation "
        f"{evaluation:,.1f} = {total:,.1f} (evaluation {share:.0%} of it); with all_epochs "
        f"{unlearning_hours + sum(c.every_epoch_hours for c in counts):,.1f}.",
    ]
    return lines
