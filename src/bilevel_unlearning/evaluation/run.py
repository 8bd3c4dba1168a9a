"""The evaluate step: one model (a start model, an oracle or an unlearned epoch) on its benchmark.

Writes one JSON with the aggregate metrics, the per-item scores they came from and the
provenance a reviewer needs to tie a number to code, config, software, hardware and inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.io import read_json, write_json
from bilevel_unlearning.metric_catalog import RESULT_FORMAT
from bilevel_unlearning.models.hf import load_model, load_tokenizer
from bilevel_unlearning.provenance import evaluation_provenance

log = logging.getLogger(__name__)


def require_file(path: Path, made_by: str) -> None:
    """A missing or empty input names the path and the rule that makes it."""
    if not path.is_file() or path.stat().st_size == 0:
        raise FileNotFoundError(f"{path} is missing or empty; it is made by rule {made_by}")


def muse_files(settings: Mapping[str, Any]) -> list[str]:
    names = ["verbmem/forget.jsonl", "privleak/forget.jsonl", "privleak/holdout.jsonl"]
    return names + [
        f"knowmem/{s}_qa{icl}.jsonl" for s in ("forget", "retain") for icl in ("", "_icl")
    ]


def tofu_files(settings: Mapping[str, Any]) -> list[str]:
    split = settings["forget_split"]
    names = (split, "retain", "real_authors", "world_facts")
    return [f"{name}_perturbed.jsonl" for name in names]


def wmdp_files(settings: Mapping[str, Any]) -> list[str]:
    return [f"questions/wmdp-{t}.jsonl" for t in settings["topics"]] + ["questions/mmlu.jsonl"]


def muse_oracle(oracle: Mapping[str, Any]) -> Any:
    """The retrain model's Min-K% AUC (PrivLeak's reference) and every MIA score's AUC."""
    mia = {name: entry["auc"] for name, entry in oracle.get("mia", {}).items()}
    return oracle["metrics"]["privleak_auc"], mia or None


def tofu_oracle(oracle: Mapping[str, Any]) -> Any:
    """The retain model's per-item truth ratios (forget quality's KS test): from this
    pipeline's evaluation of it, or from open-unlearning's published evaluation log
    (tofu.forget_quality_reference: retain_logs, the paper's reference)."""
    if "forget_truth_ratio" in oracle:
        from bilevel_unlearning.data.hub import retain_log_scores

        return retain_log_scores(oracle, "the retain log")
    return [x["truth_ratio"] for x in oracle["items"]["forget"]]


@dataclass(frozen=True)
class EvalJob:
    """One evaluation's inputs, as every family's evaluator receives them."""

    benchmark: str
    model_dir: Path
    data: Path
    settings: Mapping[str, Any]
    precision: str
    source: str  # miniature | hub
    oracle: Any  # what the oracle's evaluation contributes (oracle_statistic); None: nothing

    def model_and_tokenizer(self) -> tuple[Any, Any]:
        return load_model(self.model_dir, self.precision), load_tokenizer(self.model_dir)


def run_muse(job: EvalJob) -> dict[str, Any]:
    """MUSE's evaluator (rouge-score and its nltk: imported only by MUSE and TOFU jobs)."""
    from bilevel_unlearning.evaluation.muse import PUBLISHED_AUC_RETRAIN, evaluate_muse

    model, tokenizer = job.model_and_tokenizer()
    published = PUBLISHED_AUC_RETRAIN[job.benchmark] if job.source == "hub" else None
    auc, mia = job.oracle if job.oracle is not None else (None, None)
    return evaluate_muse(model, tokenizer, job.data, job.settings, auc, published, mia)


def run_tofu(job: EvalJob) -> dict[str, Any]:
    """TOFU's evaluator on one forget split, against its retain oracle's truth ratios."""
    from bilevel_unlearning.evaluation.tofu import evaluate_tofu

    model, tokenizer = job.model_and_tokenizer()
    split = job.settings["forget_split"]
    return evaluate_tofu(model, tokenizer, job.data, split, job.settings, job.oracle)


def run_wmdp(job: EvalJob) -> dict[str, Any]:
    """lm-eval on the topics' question sets and MMLU (lm-eval: imported only by WMDP jobs)."""
    from bilevel_unlearning.evaluation.wmdp import evaluate_wmdp

    miniature = job.source == "miniature"
    return evaluate_wmdp(job.model_dir, job.data, job.settings, job.precision, miniature)


@dataclass(frozen=True)
class Evaluator:
    """What evaluating a benchmark family takes: the data files it reads (relative to the data
    folder), what the oracle's evaluation contributes (None: no oracle), and the evaluator."""

    files: Callable[[Mapping[str, Any]], list[str]]
    oracle: Callable[[Mapping[str, Any]], Any] | None
    run: Callable[[EvalJob], dict[str, Any]]


EVALUATORS = {
    "muse": Evaluator(muse_files, muse_oracle, run_muse),
    "tofu": Evaluator(tofu_files, tofu_oracle, run_tofu),
    "wmdp": Evaluator(wmdp_files, None, run_wmdp),
}


def evaluator(benchmark: str) -> Evaluator:
    return EVALUATORS[bench(benchmark).family]


def benchmark_files(benchmark: str, data: Path, settings: Mapping[str, Any]) -> list[Path]:
    """The data files an evaluation reads, each checked to exist."""
    files = [data / name for name in evaluator(benchmark).files(settings)]
    for f in files:
        require_file(f, f"generate_{benchmark} (miniature) or download_data_{benchmark} (hub)")
    return files


def oracle_statistic(benchmark: str, reference: Path | None) -> Any:
    """What the oracle's evaluation contributes: MUSE's AUC, TOFU's per-item truth ratios."""
    contribution = evaluator(benchmark).oracle
    if reference is None or contribution is None:
        return None
    require_file(reference, f"evaluate_{benchmark} (the oracle's row)")
    return contribution(
        read_json(reference, made_by=f"rule evaluate_{benchmark} (the oracle's row)")
    )


def evaluate_step(
    *,
    benchmark: str,
    run: str,
    epoch: int,
    model_dir: Path,
    data: Path,
    out: Path,
    settings: Mapping[str, Any],
    reference: Path | None,
    seed: int,
    precision: str,
    source: str,
    attack: str = "none",
) -> None:
    """Evaluate one model and write results/{benchmark}/eval/{run}/{attack}/epoch_{epoch}.json
    (attack: what the model went through after unlearning, `none` for the model itself)."""
    torch.manual_seed(seed)
    files = benchmark_files(benchmark, data, settings)
    oracle = oracle_statistic(benchmark, reference)
    job = EvalJob(benchmark, model_dir, data, settings, precision, source, oracle)
    result = evaluator(benchmark).run(job)
    record = {
        "benchmark": benchmark,
        "run": run,
        "epoch": epoch,
        "attack": attack,
        "format": RESULT_FORMAT,
        **result,
        # the reference (the oracle's evaluation, or a retain log) checksummed with the data
        "provenance": evaluation_provenance(
            model_dir, [*files, *([reference] if reference else [])], settings, seed, precision
        ),
    }
    write_json(out, record)
    log.info("%s %s (%s) epoch %d: %s", benchmark, run, attack, epoch, result["metrics"])
