"""The evaluate step: one model (a start model, an oracle or an unlearned epoch) on its benchmark.

Writes one JSON with the aggregate metrics, the per-item scores they came from and the
provenance a reviewer needs to tie a number to code, config, software, hardware and inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.io import read_json, write_json
from bilevel_unlearning.models.hf import load_model, load_tokenizer
from bilevel_unlearning.provenance import evaluation_provenance

log = logging.getLogger(__name__)


def require_file(path: Path, made_by: str) -> None:
    """A missing or empty input names the path and the rule that makes it."""
    if not path.is_file() or path.stat().st_size == 0:
        raise FileNotFoundError(f"{path} is missing or empty; it is made by rule {made_by}")


def benchmark_files(benchmark: str, data: Path, settings: Mapping[str, Any]) -> list[Path]:
    """The data files an evaluation reads, each checked to exist."""
    family = bench(benchmark).family
    if family == "muse":
        names = ["verbmem/forget.jsonl", "privleak/forget.jsonl", "privleak/holdout.jsonl"]
        names += [
            f"knowmem/{s}_qa{icl}.jsonl" for s in ("forget", "retain") for icl in ("", "_icl")
        ]
    elif family == "tofu":
        names = [f"{settings['forget_split']}_perturbed.jsonl", "retain_perturbed.jsonl"]
        names += ["real_authors_perturbed.jsonl", "world_facts_perturbed.jsonl"]
    else:
        names = [f"questions/wmdp-{t}.jsonl" for t in settings["topics"]] + ["questions/mmlu.jsonl"]
    files = [data / n for n in names]
    for f in files:
        require_file(f, f"generate_{benchmark} (miniature) or download_data_{benchmark} (hub)")
    return files


def oracle_statistic(benchmark: str, reference: Path | None) -> Any:
    """What the oracle's evaluation contributes: MUSE's AUC, TOFU's per-item truth ratios."""
    if reference is None:
        return None
    require_file(reference, f"evaluate_{benchmark} (the oracle's row)")
    oracle = read_json(reference, made_by=f"rule evaluate_{benchmark} (the oracle's row)")
    family = bench(benchmark).family
    if family == "muse":
        mia = {name: entry["auc"] for name, entry in oracle.get("mia", {}).items()}
        return oracle["metrics"]["privleak_auc"], mia or None
    if family == "tofu":
        return [x["truth_ratio"] for x in oracle["items"]["forget"]]
    return None


def benchmark_metrics(
    benchmark: str,
    model_dir: Path,
    data: Path,
    settings: Mapping[str, Any],
    precision: str,
    source: str,
    oracle: Any,
) -> dict[str, Any]:
    """The benchmark's evaluator on one model; each job imports only its own (lm-eval for
    WMDP, rouge-score and its nltk for MUSE and TOFU: seconds of start-up each)."""
    family = bench(benchmark).family
    if family == "wmdp":
        from bilevel_unlearning.evaluation.wmdp import evaluate_wmdp

        return evaluate_wmdp(model_dir, data, settings, precision, source == "miniature")
    model = load_model(model_dir, precision)
    tokenizer = load_tokenizer(model_dir)
    if family == "tofu":
        from bilevel_unlearning.evaluation.tofu import evaluate_tofu

        return evaluate_tofu(model, tokenizer, data, settings["forget_split"], settings, oracle)
    from bilevel_unlearning.evaluation.muse import PUBLISHED_AUC_RETRAIN, evaluate_muse

    published = PUBLISHED_AUC_RETRAIN[benchmark] if source == "hub" else None
    auc, mia = oracle if oracle is not None else (None, None)
    return evaluate_muse(model, tokenizer, data, settings, auc, published, mia)


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
    result = benchmark_metrics(benchmark, model_dir, data, settings, precision, source, oracle)
    record = {
        "benchmark": benchmark,
        "run": run,
        "epoch": epoch,
        "attack": attack,
        **result,
        "provenance": evaluation_provenance(model_dir, files, settings, seed, precision),
    }
    write_json(out, record)
    log.info("%s %s (%s) epoch %d: %s", benchmark, run, attack, epoch, result["metrics"])
