"""ROUGE-L as the benchmarks define it (Google's rouge-score package, the one MUSE and TOFU use)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from rouge_score import rouge_scorer


@cache
def _scorer(use_stemmer: bool) -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)


def rouge_l(
    reference: str, prediction: str, *, measure: str = "fmeasure", stem: bool = False
) -> float:
    """ROUGE-L of one prediction against its reference: 'fmeasure' (MUSE) or 'recall' (TOFU)."""
    return getattr(_scorer(stem).score(reference, prediction)["rougeL"], measure)


def mean_rouge_l(references: Sequence[str], predictions: Sequence[str], **kwargs) -> float:
    scores = [rouge_l(r, p, **kwargs) for r, p in zip(references, predictions, strict=True)]
    return sum(scores) / len(scores)
