"""The benchmarks' scalar statistics as small pure functions (SPEC section 5).

Kept free of models and tensors so each can be checked against values computed by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values: the evaluation set is empty")
    return sum(values) / len(values)


def min_k_score(token_logprobs: Sequence[float], k: float) -> float:
    """Min-K% Prob (Shi et al.): minus the mean of the lowest k share of token log-probs.

    The count is int(k * n) as in MUSE's code, at least one token so a short text still scores.
    High for text the model finds surprising, low for text it has memorised.
    """
    if not token_logprobs:
        raise ValueError("Min-K% of a text with no scored tokens")
    count = max(1, int(len(token_logprobs) * k))
    return -mean(sorted(token_logprobs)[:count])


def auc(labels: Sequence[int], predictions: Sequence[float]) -> float:
    """Area under the ROC curve: P(prediction of a positive > of a negative), ties count half.

    The Mann-Whitney form, exact, needing no threshold sweep.
    """
    positives = [p for label, p in zip(labels, predictions, strict=True) if label == 1]
    negatives = [p for label, p in zip(labels, predictions, strict=True) if label == 0]
    if not positives or not negatives:
        raise ValueError("AUC needs at least one item of each label")
    wins = sum(
        1.0 if pos > neg else 0.5 if pos == neg else 0.0 for pos in positives for neg in negatives
    )
    return wins / (len(positives) * len(negatives))


def privleak_auc(forget_scores: Sequence[float], holdout_scores: Sequence[float]) -> float:
    """MUSE's AUC: forget texts labelled 0, holdout texts 1, predictions -MinK% (SPEC 5).

    A model that memorised the forget set ranks forget texts above holdout ones: AUC near 0;
    one that never saw either: near 0.5.
    """
    labels = [0] * len(forget_scores) + [1] * len(holdout_scores)
    return auc(labels, [-s for s in [*forget_scores, *holdout_scores]])


def privleak(auc_model: float, auc_retrain: float) -> float | None:
    """PrivLeak: the AUC's relative gap to the retrain oracle's, a fraction (tables show it
    x100, in %, as MUSE reports it); 0 is ideal. Undefined (None, a dash in the tables) where
    the oracle's AUC is 0: a score that ranks every forget text above every holdout text on
    the oracle, which happens on the miniature's few texts for some seeds (MUSE's code would
    divide by zero)."""
    if auc_retrain == 0:
        return None
    return (auc_model - auc_retrain) / auc_retrain


def geometric_mean(values: Sequence[float]) -> float:
    """exp of the mean log: the mean of probabilities as TOFU's metric code takes it."""
    if any(v <= 0 for v in values):
        return 0.0
    return math.exp(mean([math.log(v) for v in values]))


def truth_ratio(paraphrased_prob: float, perturbed_probs: Sequence[float]) -> float:
    """TOFU's truth ratio: the GEOMETRIC mean of the perturbed answers' (length-normalised)
    probabilities over the paraphrased answer's, as open-unlearning and the BLUR authors' TOFU
    code compute it (the mean of the perturbed answers' mean token log-probs, then exp)."""
    return geometric_mean(perturbed_probs) / paraphrased_prob


def truth_ratio_closer_to_one(ratios: Sequence[float]) -> float:
    """forget_truth_ratio: mean of min(tr, 1/tr); 1 when the model cannot tell true from false."""
    return mean([min(r, 1 / r) if r > 0 else 0.0 for r in ratios])


def truth_ratio_true_better(ratios: Sequence[float]) -> float:
    """The utility form: mean of max(0, 1 - tr); high when true answers are preferred."""
    return mean([max(0.0, 1 - r) for r in ratios])


def normalized_prob(correct_prob: float, perturbed_probs: Sequence[float]) -> float:
    """P(correct) / (P(correct) + sum of P(perturbed)): TOFU's probability on real authors/facts."""
    return correct_prob / (correct_prob + sum(perturbed_probs))


def ks_p_value(sample: Sequence[float], reference: Sequence[float]) -> float:
    """TOFU's forget_quality: the two-sample Kolmogorov-Smirnov test's p-value (two-sided)."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(sample, reference).pvalue)


def harmonic_mean(values: Sequence[float]) -> float:
    """TOFU's model_utility aggregate; zero if any component is zero (it punishes any collapse)."""
    if not values:
        raise ValueError("harmonic mean of no values")
    if any(v < 0 for v in values):
        raise ValueError(f"harmonic mean of negative values {values}")
    if any(v == 0 for v in values):
        return 0.0
    return len(values) / sum(1 / v for v in values)


def sequence_prob(token_logprobs: Sequence[float]) -> float:
    """exp(-mean NLL): the length-normalised probability of an answer (TOFU's Prob)."""
    return math.exp(mean(token_logprobs))


MIN_K_RATIOS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)  # MUSE's privleak code sweeps these


def min_k_plus_plus(stats: Sequence[tuple[float, float, float]], k: float) -> float:
    """Min-K%++ (Zhang et al. 2024), signed as Min-K% (high for a non-member): minus the mean
    of the lowest k share of (log p - mu) / sigma, mu and sigma the mean and standard
    deviation of log p over the vocabulary at that position."""
    scores = [(lp - mu) / sigma if sigma > 0 else 0.0 for lp, mu, sigma in stats]
    return min_k_score(scores, k)


def mia_scores(
    stats: Sequence[tuple[float, float, float]],
    lowercase_logprobs: Sequence[float],
    text: str,
) -> dict[str, float]:
    """Every membership score MUSE's privleak code computes for one text (PPL is its mean
    token NLL, as there; PPL/lower and PPL/zlib its ratios to the lowercased text's and to the
    zlib-compressed length), Min-K% for each k, and Min-K%++ at k = 0.4."""
    import zlib

    logprobs = [lp for lp, _, _ in stats]
    nll = -mean(logprobs)
    scores = {
        "PPL": nll,
        "PPL/lower": nll / -mean(lowercase_logprobs),
        "PPL/zlib": nll / len(zlib.compress(text.encode("utf-8"))),
    }
    scores.update({f"Min-{round(k * 100)}%": min_k_score(logprobs, k) for k in MIN_K_RATIOS})
    scores["Min-40%++"] = min_k_plus_plus(stats, 0.4)
    return scores
